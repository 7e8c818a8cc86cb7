'use strict'

// Builds the Fastify app of the contract in apps/README.md (fastify-cli style: app.js builds,
// server.js starts and handles signals). Tests build it directly and serve it on real sockets.

const crypto = require('node:crypto')
const os = require('node:os')
const { PassThrough } = require('node:stream')
const { setTimeout: sleep } = require('node:timers/promises')
const Fastify = require('fastify')
const { LogController } = Fastify

const { MAX_SLEEP_MS } = require('./config')
const { createMetrics } = require('./metrics')
const { ConnectionTracker, DrainingServer } = require('./drain')

const APP_NAME = 'node-app'
const MAX_BODY_BYTES = 1024 * 1024
const MAX_STREAM_SECONDS = 120
const DEFAULT_STREAM_SECONDS = 10
// Kept free before the drain deadline for a response's last bytes to leave.
const REFUSE_MARGIN_MS = 1000
const KEEP_ALIVE_TIMEOUT_MS = 120000 // longer than proxies' pool idle timeouts (Traefik: 90 s)
const QUIET_ROUTES = new Set(['/healthz', '/readyz', '/metrics']) // logged at debug, not info

class BadParameter extends Error {}

// Parses a query parameter as an integer in [lo, hi]; absent gives undefined.
function boundedInt (query, name, lo, hi) {
  const raw = query[name]
  if (raw === undefined) return undefined
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || Number(raw) < lo || Number(raw) > hi) {
    throw new BadParameter(`${name}: want an integer from ${lo} to ${hi}, got ${JSON.stringify(raw)}`)
  }
  return Number(raw)
}

/** The sleep of GET|POST /: ?sleep=MS exactly, else a random whole number of ms in [0, sleepMaxMs]. */
function pickSleepMs (query, sleepMaxMs) {
  return boundedInt(query, 'sleep', 0, MAX_SLEEP_MS) ?? crypto.randomInt(sleepMaxMs + 1)
}

function requestId (req) {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && given !== '' && given.length <= 200 ? given : crypto.randomBytes(16).toString('hex')
}

/**
 * @param {object} config from parseConfig
 * @param {object} [options]
 * @param {string} [options.hostname] X-Served-By (default: os.hostname())
 * @param {import('node:stream').Writable} [options.logStream] log destination (default: stdout)
 */
function buildApp (config, options = {}) {
  const hostname = options.hostname ?? os.hostname()
  const tracker = new ConnectionTracker()
  // lastResponseAt: when the last request other than a probe or a scrape ended; the drain's log
  // reports it, for the deployer's drain-race timeline.
  const lifecycle = { ready: true, closing: false, deadline: undefined, lastResponseAt: undefined }
  const inflight = new Set()

  const app = Fastify({
    logger: {
      level: config.logLevel,
      stream: options.logStream,
      base: { app: APP_NAME, version: config.version },
      timestamp: () => `,"time":"${new Date().toISOString()}"`,
      formatters: { level: (label) => ({ level: label }) }
    },
    // One line per request comes from the onResponse hook below.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    genReqId: requestId,
    bodyLimit: MAX_BODY_BYTES,
    // Late keep-alive requests must be served (with Connection: close), not refused with 503.
    return503OnClosing: false,
    forceCloseConnections: false,
    serverFactory: (handler) => {
      const server = new DrainingServer(handler)
      server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
      tracker.attach(server)
      return server
    }
  })

  // The POST body is ignored whatever its type, but read (so the socket stays reusable) and capped.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (req, body, done) => done(null, undefined))

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-app-name', APP_NAME)
    reply.header('x-app-version', config.version)
    reply.header('x-served-by', hostname)
    reply.header('x-request-id', request.id)
    const entry = { method: request.method, path: request.url.split('?')[0], requestId: request.id, start: Date.now() }
    inflight.add(entry)
    reply.raw.once('close', () => {
      inflight.delete(entry)
      if (!QUIET_ROUTES.has(entry.path)) lifecycle.lastResponseAt = new Date()
    })
  })

  // From the shutdown signal on (the delay included). Decided when the header is written, not when
  // the request arrived, so a long request accepted before the signal still tells its client not
  // to reuse the connection.
  app.addHook('onSend', async (request, reply) => {
    if (!lifecycle.ready) reply.header('connection', 'close')
  })

  const metrics = createMetrics(APP_NAME, config.version)
  if (config.telemetry) {
    app.addHook('onRequest', async (request, reply) => {
      metrics.inFlight.inc()
      reply.raw.once('close', () => metrics.inFlight.dec())
    })
    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions.url ?? 'unmatched'
      const status = reply.statusCode
      const seconds = reply.elapsedTime / 1000
      metrics.requests.inc({ method: request.method, route, code: String(status) })
      metrics.duration.observe({ method: request.method, route }, seconds)
      const level = QUIET_ROUTES.has(route) ? 'debug' : 'info'
      request.log[level]({
        method: request.method,
        path: request.url.split('?')[0],
        route,
        status,
        duration_ms: Math.round(reply.elapsedTime * 1000) / 1000,
        remote: request.ip
      }, 'request')
    })
  }

  app.setErrorHandler((err, request, reply) => {
    if (err instanceof BadParameter) {
      return reply.code(400).send({ error: err.message })
    }
    if (err.statusCode === 413) {
      return reply.code(413).send({ error: 'body larger than 1 MiB' })
    }
    if (err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send({ error: err.message })
    }
    request.log.error({ err }, 'request failed')
    return reply.code(500).send({ error: 'internal error' })
  })

  /**
   * During the drain, a request that needs longer than the drain has left is refused at once
   * (503, Retry-After, Connection: close, before any body), so no request accepted after the
   * signal is cut by the shutdown timeout. Returns the reply when it refused, else undefined.
   */
  function refuseBeyondDrain (reply, needMs) {
    if (lifecycle.deadline === undefined) return undefined
    const leftMs = lifecycle.deadline - Date.now() - REFUSE_MARGIN_MS
    if (needMs <= leftMs) return undefined
    return reply.code(503).header('retry-after', '1').header('connection', 'close').send({
      error: `shutting down: this request needs ${Math.round(needMs / 1000)} s, the drain has ` +
        `${Math.max(0, Math.round(leftMs / 1000))} s left; retry on another replica`
    })
  }

  async function hello (request, reply) {
    const sleepMs = pickSleepMs(request.query, config.sleepMaxMs)
    const refused = refuseBeyondDrain(reply, sleepMs)
    if (refused) return refused
    await sleep(sleepMs)
    return reply.type('text/plain; charset=utf-8').send('Hi!')
  }
  app.get('/', hello)
  app.post('/', hello)

  app.get('/stream', async (request, reply) => {
    const seconds = boundedInt(request.query, 'seconds', 0, MAX_STREAM_SECONDS) ?? DEFAULT_STREAM_SECONDS
    const refused = refuseBeyondDrain(reply, seconds * 1000)
    if (refused) return refused
    const body = new PassThrough()
    let line = 0
    const timer = setInterval(() => {
      line++
      body.write(`line ${line} of ${seconds}\n`)
      if (line >= seconds) {
        clearInterval(timer)
        body.end()
      }
    }, 1000)
    if (seconds === 0) {
      clearInterval(timer)
      body.end()
    }
    request.raw.once('close', () => clearInterval(timer)) // the client left or the drain timed out
    // The headers leave now, so they could not announce a shutdown that comes during the stream:
    // end the connection anyway, or a kept-alive client could start another stream on a leaving pod.
    reply.type('text/plain; charset=utf-8').header('x-content-type-options', 'nosniff').header('connection', 'close')
    reply.raw.once('pipe', () => reply.raw.flushHeaders()) // the client sees the stream start at once
    return reply.send(body)
  })

  app.get('/healthz', async (request, reply) => reply.type('text/plain; charset=utf-8').send('ok\n'))

  app.get('/readyz', async (request, reply) => {
    reply.type('text/plain; charset=utf-8')
    if (config.fault === 'unready') return reply.code(503).send('unready (FAULT=unready)\n')
    if (!lifecycle.ready) return reply.code(503).send('draining\n')
    return reply.send('ready\n')
  })

  app.get('/metrics', async (request, reply) => {
    reply.type(metrics.registry.contentType)
    return reply.send(await metrics.registry.metrics())
  })

  /**
   * The shutdown timeline of apps/README.md after the signal: readiness 503 and Connection: close
   * at once, keep accepting for delayMs, then stop accepting and drain. Resolves when every connection closed.
   * deadlineMs (epoch ms), when the shutdown timeout cuts what still runs, lets the drain refuse
   * requests that could not finish by then.
   */
  app.decorate('drain', async function drain (delayMs, deadlineMs) {
    lifecycle.deadline = deadlineMs
    lifecycle.ready = false
    app.log.info({ delay_seconds: delayMs / 1000 }, 'shutdown: readiness is 503; accepting until the delay ends, with Connection: close')
    await sleep(delayMs)
    lifecycle.closing = true
    const closed = app.close() // stops accepting; DrainingServer keeps idle sockets for the tracker
    tracker.startReaping()
    app.log.info('shutdown: stopped accepting; draining connections')
    await closed
    app.log.info({ last_response_at: lifecycle.lastResponseAt?.toISOString() ?? null }, 'shutdown: drained')
  })

  /** Logs every request still running; called when the shutdown timeout runs out. */
  app.decorate('logCut', function logCut () {
    const now = Date.now()
    for (const r of [...inflight].sort((a, b) => a.start - b.start)) {
      app.log.error({ method: r.method, path: r.path, request_id: r.requestId, running_seconds: (now - r.start) / 1000 },
        'shutdown timeout: cutting request')
    }
    app.log.error({ requests: inflight.size, connections: tracker.size },
      `shutdown timeout: cut ${inflight.size} requests and closed ${tracker.size} connections`)
  })

  app.decorate('lifecycle', lifecycle)
  /** Requests inside their handlers; tests wait on it instead of sleeping a guessed time. */
  app.decorate('inflightCount', () => inflight.size)
  return app
}

module.exports = { buildApp, pickSleepMs, APP_NAME }
