'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const net = require('node:net')
const { setTimeout: sleep } = require('node:timers/promises')
const { startApp, request, RawClient } = require('./helpers')
const { IDLE_CLOSE_AFTER_MS } = require('../src/drain')

// Waits until n requests are inside their handlers: a fixed sleep is too short on a loaded
// machine, and a drain begun before the request arrived would refuse it.
async function waitInflight (app, n) {
  const deadline = Date.now() + 10000
  while (app.inflightCount() < n) {
    if (Date.now() > deadline) throw new Error(`${app.inflightCount()} requests in flight after 10 s, want ${n}`)
    await sleep(5)
  }
}

function refused (port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(false) })
    socket.once('error', () => resolve(true))
  })
}

test('during the delay requests are served with Connection: close, then new connections are refused', async (t) => {
  const { app, port } = await startApp(t)
  const drained = app.drain(2000)
  await sleep(100)
  const client = await RawClient.connect(port)
  t.after(() => client.destroy())
  const res = await client.roundTrip('GET', '/?sleep=0')
  assert.equal(res.status, 200)
  assert.equal(res.body, 'Hi!')
  // Served, but told to reconnect elsewhere: a client pinned to this pod by kube-proxy leaves it now.
  assert.equal(res.headers.connection, 'close', 'a response during the delay must carry Connection: close')
  assert.equal((await request(port, 'GET', '/readyz')).status, 503)
  client.destroy()
  await drained
  assert.ok(await refused(port), 'new connections are still accepted after the drain')
})

test('accepted requests finish with Connection: close', async (t) => {
  const { app, port } = await startApp(t)
  const client = await RawClient.connect(port)
  t.after(() => client.destroy())
  const pending = client.roundTrip('GET', '/?sleep=800')
  await waitInflight(app, 1)
  const drained = app.drain(0)
  const res = await pending
  assert.equal(res.status, 200)
  assert.equal(res.body, 'Hi!')
  assert.equal(res.headers.connection, 'close')
  assert.ok(await client.closedByServer(3000), 'server kept the connection open after Connection: close')
  await drained
})

test('the drain waits for streams', async (t) => {
  const { app, port } = await startApp(t)
  let body
  // The stream cannot start before launch and ticks for 2 s, so a drain that waited for it ends
  // no earlier than launch + 2 s, however loaded the machine is.
  const launch = Date.now()
  const stream = request(port, 'GET', '/stream?seconds=2').then((res) => { body = res.body })
  await waitInflight(app, 1)
  await app.drain(0)
  const drainedAfter = Date.now() - launch
  await stream
  assert.equal(body, 'line 1 of 2\nline 2 of 2\n')
  assert.ok(drainedAfter >= 1950, // timers may fire a few ms early
    `drain finished ${drainedAfter} ms after the stream began, before its 2 s were over`)
})

test('idle connections get a grace before the drain closes them', async (t) => {
  const { app, port } = await startApp(t)
  const reused = await RawClient.connect(port)
  const idle = await RawClient.connect(port)
  t.after(() => { reused.destroy(); idle.destroy() })
  for (const c of [reused, idle]) assert.equal((await c.roundTrip('GET', '/?sleep=0')).status, 200)
  const idleSince = Date.now()
  const drained = app.drain(0)
  await sleep(IDLE_CLOSE_AFTER_MS / 3)
  // A client reusing its idle connection soon after the drain began gets an answer, not EOF.
  const res = await reused.roundTrip('POST', '/?sleep=0', 'hello')
  assert.equal(res.status, 200)
  assert.equal(res.body, 'Hi!')
  assert.equal(res.headers.connection, 'close')
  // A connection that stays idle is closed by the server, but not before the grace.
  // The grace counts from the connection's last response; on a loaded machine little may be left.
  const left = IDLE_CLOSE_AFTER_MS - (Date.now() - idleSince) - 100
  if (left > 0) assert.equal(await idle.closedByServer(left), false, 'closed before the idle grace')
  assert.equal(await idle.closedByServer(5000), true, 'idle connection was not closed')
  await drained
})

test('the drain refuses requests longer than its budget and serves shorter ones', async (t) => {
  const { app, port } = await startApp(t)
  // 6 s until the shutdown timeout, the first 4 s of it serving normally (the delay), so new
  // connections are still accepted while the budget shrinks.
  const drained = app.drain(4000, Date.now() + 6000)
  await sleep(100)
  for (const [path, refuse] of [['/stream?seconds=30', true], ['/?sleep=30000', true],
    ['/stream?seconds=1', false], ['/?sleep=500', false]]) {
    const client = await RawClient.connect(port)
    t.after(() => client.destroy())
    const res = await client.roundTrip('GET', path)
    if (refuse) {
      assert.equal(res.status, 503, `${path} during the drain`)
      assert.ok(res.headers['retry-after'], `${path}: no Retry-After`)
      assert.equal(res.headers.connection, 'close', `${path}: no Connection: close`)
      assert.match(res.body, /shutting down/)
    } else {
      assert.equal(res.status, 200, `${path} fits the budget`)
      assert.ok(res.body === 'Hi!' || res.body === 'line 1 of 1\n', `${path}: ${res.body}`)
    }
    client.destroy()
  }
  await drained
})

test('requests before a drain are never refused', async (t) => {
  const { port } = await startApp(t)
  const res = await request(port, 'GET', '/stream?seconds=1')
  assert.equal(res.status, 200)
  assert.equal(res.body, 'line 1 of 1\n')
})

test('the drained line reports the last response, not the later probes', async (t) => {
  const { app, port, logs } = await startApp(t)
  const before = Date.now()
  assert.equal((await request(port, 'GET', '/?sleep=0')).status, 200)
  await sleep(50)
  const after = Date.now() // before the probe: its response must not count
  assert.equal((await request(port, 'GET', '/readyz')).status, 200)
  await app.drain(0)
  const line = logs.lines.find((entry) => entry.msg === 'shutdown: drained')
  assert.ok(line, "no 'shutdown: drained' line")
  const at = Date.parse(line.last_response_at)
  assert.ok(at >= before && at <= after, `last_response_at ${line.last_response_at}, want the GET / between ${before} and ${after}`)
})
