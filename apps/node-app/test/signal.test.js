'use strict'

// Process tests: run the real server, signal it as Kubernetes would, and check every promise of
// the shutdown timeline in apps/README.md.

const { describe, test } = require('node:test')
const assert = require('node:assert/strict')
const { spawn, spawnSync } = require('node:child_process')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const { setTimeout: sleep } = require('node:timers/promises')
const { RawClient } = require('./helpers')

const SERVER = path.join(__dirname, '..', 'src', 'server.js')
// Persistent connections sending back-to-back requests, each pausing this many ms between them
// (like a client doing a little work). At any instant some are idle on the server, so a drain
// that closes idle sockets at once, or before they were idle for a while, is caught every time.
const PAUSES_MS = [0, 1, 2, 3, 5, 8, 50, 200]

class Process {
  static async start (env = {}) {
    const p = new Process(env)
    await p.listening
    return p
  }

  constructor (env) {
    this.lines = []
    this.stderr = ''
    this.child = spawn(process.execPath, [SERVER], {
      env: { ...process.env, PORT: '0', SLEEP_MAX_MS: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => resolve(signal ? 128 + os.constants.signals[signal] : code))
    })
    this.child.stderr.on('data', (d) => { this.stderr += d })
    this.listening = new Promise((resolve, reject) => {
      readline.createInterface({ input: this.child.stdout }).on('line', (text) => {
        let line
        try { line = JSON.parse(text) } catch { line = { unparsed: text } }
        this.lines.push(line)
        if (line.msg === 'listening') { this.port = line.addr.port; resolve() }
      })
      this.exited.then((code) => reject(new Error(`node-app exited with ${code} at start: ${this.stderr}`)))
    })
  }

  signal (name) {
    this.child.kill(name)
  }

  async exitCode (withinMs) {
    const timeout = sleep(withinMs).then(() => { throw new Error(`node-app still running after ${withinMs} ms`) })
    return Promise.race([this.exited, timeout])
  }

  logged (msg, fields = {}) {
    return this.lines.some((l) => l.msg === msg && Object.entries(fields).every(([k, v]) => l[k] === v))
  }

  async waitLog (msg, withinMs) {
    const deadline = Date.now() + withinMs
    while (!this.logged(msg)) {
      if (Date.now() > deadline) throw new Error(`no log line ${JSON.stringify(msg)}`)
      await sleep(20)
    }
  }

  kill () {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
  }
}

/**
 * The signal test: a 5 s request, a 6 s stream and busy keep-alive connections are
 * running when SIGTERM arrives; readiness is polled on new connections until they are refused.
 * Returns every broken promise.
 */
async function signalScenario (t, env = {}) {
  const delayMs = 1000
  const p = await Process.start({ SHUTDOWN_DELAY_SECONDS: '1', SHUTDOWN_TIMEOUT_SECONDS: '30', ...env })
  t.after(() => p.kill())
  const violations = []
  const clients = []
  const connect = async () => {
    const c = await RawClient.connect(p.port)
    clients.push(c)
    return c
  }
  t.after(() => clients.forEach((c) => c.destroy()))

  const slow = (async () => {
    const res = await (await connect()).roundTrip('GET', '/?sleep=5000')
    if (res.status !== 200 || res.body !== 'Hi!') violations.push(`5 s request: ${res.status} ${res.body}`)
    else if (res.headers.connection !== 'close') violations.push('5 s request: answered during the drain without Connection: close')
  })().catch((err) => violations.push(`5 s request: ${err.message}`))

  const stream = (async () => {
    const res = await (await connect()).roundTrip('GET', '/stream?seconds=6')
    const want = [1, 2, 3, 4, 5, 6].map((i) => `line ${i} of 6\n`).join('')
    if (res.status !== 200 || res.body !== want) violations.push(`stream: incomplete: ${JSON.stringify(res.body)}`)
  })().catch((err) => violations.push(`stream: incomplete (${err.message})`))

  const begin = Date.now()
  const busy = PAUSES_MS.map(async (pauseMs, i) => {
    const c = await connect()
    for (let n = 0; ; n++) {
      let res
      try {
        res = await c.roundTrip('POST', '/?sleep=0', 'hello')
      } catch (err) {
        violations.push(`persistent connection ${i}: ${err.code ?? err.message} after ${n} responses, none with Connection: close`)
        return
      }
      if (res.status !== 200) {
        violations.push(`persistent connection ${i}: status ${res.status}`)
        return
      }
      if (res.headers.connection === 'close') {
        if (!await c.closedByServer(5000)) violations.push(`persistent connection ${i}: still open after Connection: close`)
        return
      }
      if (Date.now() - begin > 20000) {
        violations.push(`persistent connection ${i}: no Connection: close after 20 s`)
        return
      }
      if (pauseMs > 0) await sleep(pauseMs)
    }
  })

  await sleep(1000)
  p.signal('SIGTERM')
  const signalled = Date.now()
  const statuses = []
  while (Date.now() - signalled < 15000) {
    let c
    try {
      c = await RawClient.connect(p.port)
    } catch {
      const refusedAfter = Date.now() - signalled
      if (refusedAfter < delayMs - 100) {
        violations.push(`new connections refused ${refusedAfter} ms after SIGTERM, within SHUTDOWN_DELAY_SECONDS`)
      }
      break
    }
    try {
      statuses.push((await c.roundTrip('GET', '/readyz')).status)
    } catch {}
    c.destroy()
    await sleep(50)
  }
  await Promise.all([slow, stream, ...busy])
  const first503 = statuses.indexOf(503)
  if (first503 < 0) violations.push(`readiness never answered 503 during the drain: ${statuses}`)
  else if (statuses.slice(first503).some((s) => s !== 503)) violations.push(`readiness went back from 503: ${statuses}`)
  const code = await p.exitCode(30000)
  if (code !== 0) violations.push(`exit code ${code}, want 0`)
  return violations
}

describe('signals', { concurrency: true }, () => {
  test('SIGTERM drains everything and exits 0', async (t) => {
    const violations = await signalScenario(t)
    assert.deepEqual(violations, [], `graceful shutdown broke promises:\n${violations.join('\n')}`)
  })

  // The same scenario against SHUTDOWN_MODE=immediate must break every promise: this proves each
  // check above can fail.
  test('the signal scenario detects an unsafe shutdown', async (t) => {
    const violations = (await signalScenario(t, { SHUTDOWN_MODE: 'immediate' })).join('\n')
    t.diagnostic(`violations of the unsafe shutdown:\n${violations}`)
    for (const expected of ['5 s request:', 'stream: incomplete', 'persistent connection', 'within SHUTDOWN_DELAY_SECONDS',
      'readiness never answered 503', 'exit code 143']) {
      assert.ok(violations.includes(expected), `unsafe shutdown not detected by the "${expected}" check`)
    }
  })

  test('SIGINT also shuts down gracefully', async (t) => {
    const p = await Process.start()
    t.after(() => p.kill())
    p.signal('SIGINT')
    assert.equal(await p.exitCode(10000), 0)
    assert.ok(p.logged('shutdown complete'))
  })

  test('a second signal exits at once', async (t) => {
    const p = await Process.start({ SHUTDOWN_TIMEOUT_SECONDS: '60' })
    t.after(() => p.kill())
    const client = await RawClient.connect(p.port)
    t.after(() => client.destroy())
    client.roundTrip('GET', '/?sleep=30000').catch(() => {})
    await sleep(200)
    p.signal('SIGTERM')
    await p.waitLog('shutdown: stopped accepting; draining connections', 5000)
    p.signal('SIGTERM')
    assert.notEqual(await p.exitCode(5000), 0)
    assert.ok(p.logged('second signal: exiting at once'))
  })

  test('the shutdown timeout logs what it cut and exits 1', async (t) => {
    const p = await Process.start({ SHUTDOWN_TIMEOUT_SECONDS: '1' })
    t.after(() => p.kill())
    const client = await RawClient.connect(p.port)
    t.after(() => client.destroy())
    const result = client.roundTrip('GET', '/?sleep=30000').then(() => 'answered', () => 'cut')
    await sleep(200)
    p.signal('SIGTERM')
    assert.equal(await p.exitCode(10000), 1)
    assert.ok(p.logged('shutdown timeout: cutting request', { method: 'GET', path: '/' }), 'the cut request was not logged')
    assert.equal(await result, 'cut')
  })
})

test('bad configuration exits 2 with one line', () => {
  for (const env of [{ PORT: 'abc' }, { SHUTDOWN_MODE: 'sometimes' }, { SLEEP_MAX_MS: '-5' }]) {
    const run = spawnSync(process.execPath, [SERVER], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 10000 })
    const name = Object.keys(env)[0]
    assert.equal(run.status, 2, `${name}: ${run.stderr}`)
    assert.equal(run.stderr.split('\n').length, 2, `${name}: want one line, got ${JSON.stringify(run.stderr)}`)
    assert.ok(run.stderr.includes(name))
  }
})

test('FAULT=crash logs and exits 1', () => {
  const run = spawnSync(process.execPath, [SERVER], { env: { ...process.env, FAULT: 'crash', PORT: '0' }, encoding: 'utf8', timeout: 10000 })
  assert.equal(run.status, 1)
  const line = run.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((l) => l.msg.includes('FAULT=crash'))
  assert.equal(line?.level, 'error')
})
