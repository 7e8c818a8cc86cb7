'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { startApp, request, RawClient } = require('./helpers')
const { pickSleepMs } = require('../src/app')

test('GET and POST / answer Hi! with the contract headers', async (t) => {
  const { port } = await startApp(t, { APP_VERSION: 'v7' })
  for (const method of ['GET', 'POST']) {
    const res = await request(port, method, '/?sleep=0', { body: method === 'POST' ? 'ignored' : undefined })
    assert.equal(res.status, 200, method)
    assert.equal(res.body, 'Hi!')
    assert.equal(res.headers['x-app-name'], 'node-app')
    assert.equal(res.headers['x-app-version'], 'v7')
    assert.equal(res.headers['x-served-by'], 'test-host')
    assert.match(res.headers['x-request-id'], /^[0-9a-f]{32}$/)
  }
  const missing = await request(port, 'GET', '/nope')
  assert.equal(missing.status, 404)
  assert.equal(missing.headers['x-app-name'], 'node-app')
})

test('POST bodies of any type are ignored', async (t) => {
  const { port } = await startApp(t)
  for (const type of ['application/json', 'text/plain', 'application/octet-stream', undefined]) {
    const headers = type ? { 'content-type': type } : {}
    const res = await request(port, 'POST', '/?sleep=0', { body: '{not json', headers })
    assert.equal(res.status, 200, `content-type ${type}`)
  }
})

test('sleep sets the exact sleep', async (t) => {
  const { port } = await startApp(t)
  const start = Date.now()
  const res = await request(port, 'GET', '/?sleep=300')
  assert.equal(res.status, 200)
  assert.ok(Date.now() - start >= 300, 'answered before the 300 ms sleep')
})

test('without ?sleep the sleep is random within SLEEP_MAX_MS', () => {
  const draws = Array.from({ length: 300 }, () => pickSleepMs({}, 40))
  assert.ok(draws.every((ms) => Number.isInteger(ms) && ms >= 0 && ms <= 40), 'a draw outside [0, 40]')
  assert.ok(new Set(draws).size >= 10, 'fewer than 10 distinct sleeps in 300 draws: not random')
  assert.equal(pickSleepMs({ sleep: '1234' }, 40), 1234)
})

test('bad parameters get 400 with a JSON error', async (t) => {
  const { port } = await startApp(t)
  for (const path of ['/?sleep=abc', '/?sleep=-1', '/?sleep=60001', '/?sleep=1.5', '/?sleep=', '/?sleep=1&sleep=2',
    '/stream?seconds=121', '/stream?seconds=x']) {
    const res = await request(port, 'GET', path)
    assert.equal(res.status, 400, path)
    assert.match(res.headers['content-type'], /^application\/json/, path)
    assert.ok(typeof JSON.parse(res.body).error === 'string', path)
  }
})

test('POST bodies are capped at 1 MiB', async (t) => {
  const { port } = await startApp(t)
  const ok = await request(port, 'POST', '/?sleep=0', { body: 'x'.repeat(1024 * 1024), headers: { 'content-type': 'text/plain' } })
  assert.equal(ok.status, 200)
  const tooLarge = await request(port, 'POST', '/?sleep=0', { body: 'x'.repeat(1024 * 1024 + 1), headers: { 'content-type': 'text/plain' } })
  assert.equal(tooLarge.status, 413)
  assert.ok(JSON.parse(tooLarge.body).error)
})

test('the stream writes one line per second', async (t) => {
  const { port } = await startApp(t)
  const start = Date.now()
  const res = await request(port, 'GET', '/stream?seconds=2')
  assert.equal(res.status, 200)
  assert.equal(res.body, 'line 1 of 2\nline 2 of 2\n')
  assert.ok(Date.now() - start >= 2000, 'a 2-line stream ended before 2 s')
})

test('the stream defaults to 10 seconds and starts at once', async (t) => {
  const { port } = await startApp(t)
  const client = await RawClient.connect(port)
  t.after(() => client.destroy())
  client.socket.write('GET /stream HTTP/1.1\r\nHost: t\r\n\r\n')
  const head = await client.readUntil(() => client.buffer.includes('\r\n\r\n') ? client.buffer.toString() : undefined)
  assert.match(head, /^HTTP\/1.1 200/)
  // Its headers leave before the body, so they cannot announce a later shutdown: a stream always
  // ends its connection, and a client never starts a second one on a leaving pod.
  assert.match(head, /\r\nconnection: close\r\n/i, 'a stream\'s headers lack Connection: close')
  const first = await client.readUntil(() => {
    const text = client.buffer.toString()
    return text.includes('line 1 of') ? text : undefined
  })
  assert.match(first, /line 1 of 10\n/)
})

test('probes: liveness stays 200 while draining, readiness turns 503', async (t) => {
  const { app, port } = await startApp(t)
  assert.equal((await request(port, 'GET', '/healthz')).status, 200)
  assert.equal((await request(port, 'GET', '/readyz')).status, 200)
  app.lifecycle.ready = false
  assert.equal((await request(port, 'GET', '/readyz')).status, 503)
  assert.equal((await request(port, 'GET', '/healthz')).status, 200)

  const unready = await startApp(t, { FAULT: 'unready' })
  assert.equal((await request(unready.port, 'GET', '/readyz')).status, 503)
})

test('metrics', async (t) => {
  const { port } = await startApp(t, { APP_VERSION: 'v9' })
  await request(port, 'GET', '/?sleep=0')
  await request(port, 'POST', '/?sleep=0')
  await request(port, 'GET', '/?sleep=bad')
  await request(port, 'GET', '/missing')
  await request(port, 'GET', '/healthz')
  const res = await request(port, 'GET', '/metrics')
  assert.equal(res.status, 200)
  assert.match(res.headers['content-type'], /^text\/plain/)
  for (const expected of [
    'http_requests_total{method="GET",route="/",code="200"} 1',
    'http_requests_total{method="POST",route="/",code="200"} 1',
    'http_requests_total{method="GET",route="/",code="400"} 1',
    'http_requests_total{method="GET",route="unmatched",code="404"} 1',
    'http_requests_total{method="GET",route="/healthz",code="200"} 1',
    'http_request_duration_seconds_count{method="GET",route="/"} 2',
    'http_requests_in_flight 1', // the scrape itself
    'app_build_info{app="node-app",version="v9"} 1'
  ]) {
    assert.ok(res.body.includes(expected + '\n'), `/metrics lacks ${expected}`)
  }
  for (const le of ['0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5', '10', '30', '60', '120', '+Inf']) {
    assert.ok(res.body.includes(`http_request_duration_seconds_bucket{le="${le}",method="GET",route="/"}`), `no le=${le} bucket`)
  }
})

test('one JSON log line per request; probes and metrics only at debug', async (t) => {
  const { port, logs } = await startApp(t, { APP_VERSION: 'v3' })
  await request(port, 'GET', '/?sleep=0', { headers: { 'x-request-id': 'req-42' } })
  await request(port, 'GET', '/healthz')
  await request(port, 'GET', '/readyz')
  await request(port, 'GET', '/metrics')
  const lines = logs.lines.filter((l) => l.msg === 'request')
  assert.equal(lines.length, 1, JSON.stringify(lines))
  const [line] = lines
  assert.equal(line.level, 'info')
  assert.equal(line.method, 'GET')
  assert.equal(line.path, '/')
  assert.equal(line.status, 200)
  assert.equal(line.version, 'v3')
  assert.equal(line.request_id, 'req-42')
  assert.ok(!Number.isNaN(Date.parse(line.time)), 'time')
  assert.equal(typeof line.duration_ms, 'number')

  const debug = await startApp(t, { LOG_LEVEL: 'debug' })
  await request(debug.port, 'GET', '/healthz')
  const probe = debug.logs.lines.filter((l) => l.msg === 'request')
  assert.equal(probe.length, 1)
  assert.equal(probe[0].path, '/healthz')
  assert.equal(probe[0].level, 'debug')
})

test('TELEMETRY=off skips request logs and request metrics', async (t) => {
  const { port, logs } = await startApp(t, { TELEMETRY: 'off' })
  const res = await request(port, 'GET', '/?sleep=0')
  assert.equal(res.body, 'Hi!')
  const metrics = await request(port, 'GET', '/metrics')
  assert.ok(!metrics.body.includes('http_requests_total{'))
  assert.ok(metrics.body.includes('app_build_info{'))
  assert.equal(logs.lines.filter((l) => l.msg === 'request').length, 0)
})
