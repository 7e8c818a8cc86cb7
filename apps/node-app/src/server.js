'use strict'

// Entry point (node src/server.js, PID 1 in the image): reads the environment, starts the app on
// 0.0.0.0:$PORT and runs the shutdown timeline of apps/README.md on SIGTERM or SIGINT.

const os = require('node:os')
const closeWithGrace = require('close-with-grace')
const { parseConfig, ConfigError } = require('./config')
const { buildApp, APP_NAME } = require('./app')

const EXIT_FAILURE = 1 // FAULT=crash, listen errors, shutdown timeout
const EXIT_BAD_CONFIG = 2
const SIGNALS = ['SIGTERM', 'SIGINT']

function exitCodeFor (signal) {
  return 128 + os.constants.signals[signal]
}

// SHUTDOWN_MODE=immediate, the unsafe control: restore the default action and re-raise, so the
// process dies exactly like an app without signal handling.
function dieOnSignal (app) {
  for (const signal of SIGNALS) {
    process.once(signal, () => {
      app.log.warn({ signal }, 'SHUTDOWN_MODE=immediate: dying on the signal without draining')
      process.kill(process.pid, signal)
      // As PID 1 in a container the kernel ignores the default action, so exit like it would have.
      setTimeout(() => process.exit(exitCodeFor(signal)), 1000)
    })
  }
}

function drainOnSignal (app, config) {
  // The timeout counts from the signal and includes the delay, matching Kubernetes' grace period.
  closeWithGrace({
    delay: config.shutdownTimeoutMs,
    logger: false,
    onTimeout: () => app.logCut(), // close-with-grace then exits 1
    onSecondSignal: (signal) => {
      app.log.error({ signal }, 'second signal: exiting at once')
      process.exit(exitCodeFor(signal))
    }
  }, async ({ signal, err }) => {
    const deadlineMs = Date.now() + config.shutdownTimeoutMs // close-with-grace calls this at the signal
    if (err) app.log.error({ err }, 'fatal error: shutting down')
    else app.log.info({ signal, timeout_seconds: config.shutdownTimeoutMs / 1000 }, 'shutdown signal received')
    await app.drain(config.shutdownDelayMs, deadlineMs)
    app.log.info('shutdown complete') // close-with-grace exits 0 (1 after a fatal error)
  })
}

async function main () {
  let config
  try {
    config = parseConfig(process.env)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`${APP_NAME}: ${err.message}\n`)
    process.exit(EXIT_BAD_CONFIG)
  }
  const app = buildApp(config)
  if (config.fault === 'crash') {
    app.log.error('FAULT=crash: exiting at start')
    process.exit(EXIT_FAILURE)
  }
  if (config.shutdownMode === 'immediate') dieOnSignal(app)
  else drainOnSignal(app, config)
  try {
    // Fastify logs "Server listening at ..." with the bound address.
    await app.listen({ host: '0.0.0.0', port: config.port })
  } catch (err) {
    app.log.error({ err }, 'cannot listen')
    process.exit(EXIT_FAILURE)
  }
  app.log.info({ addr: app.server.address(), telemetry: config.telemetry, shutdown_mode: config.shutdownMode, fault: config.fault },
    'listening')
}

main()
