'use strict'

// Reads the app contract's environment variables (see apps/README.md). Every error is one line
// naming the variable, the bad value and what is allowed.

const MAX_SLEEP_MS = 60000

class ConfigError extends Error {}

function intVar (env, name, def, lo, hi) {
  const raw = env[name]
  if (raw === undefined || raw === '') return def
  const trimmed = raw.trim()
  const value = Number(trimmed)
  if (!/^-?\d+$/.test(trimmed) || value < lo || value > hi) {
    throw new ConfigError(`invalid ${name} ${JSON.stringify(raw)}: want an integer from ${lo} to ${hi}`)
  }
  return value
}

function enumVar (env, name, def, allowed) {
  const raw = env[name]
  if (raw === undefined || raw === '') return def
  if (!allowed.includes(raw)) {
    throw new ConfigError(`invalid ${name} ${JSON.stringify(raw)}: want one of ${allowed.join(', ')}`)
  }
  return raw
}

function parseConfig (env) {
  const config = {
    port: intVar(env, 'PORT', 8080, 0, 65535), // 0 picks a free port (tests); the address is logged
    version: env.APP_VERSION || 'dev',
    sleepMaxMs: intVar(env, 'SLEEP_MAX_MS', 2000, 0, MAX_SLEEP_MS),
    shutdownDelayMs: intVar(env, 'SHUTDOWN_DELAY_SECONDS', 0, 0, 3600) * 1000,
    shutdownTimeoutMs: intVar(env, 'SHUTDOWN_TIMEOUT_SECONDS', 90, 1, 3600) * 1000,
    fault: enumVar(env, 'FAULT', '', ['crash', 'unready']),
    shutdownMode: enumVar(env, 'SHUTDOWN_MODE', 'graceful', ['graceful', 'immediate']),
    // TELEMETRY=off skips request logs and request metrics; it exists for the benchmark.
    telemetry: enumVar(env, 'TELEMETRY', 'on', ['on', 'off']) === 'on',
    logLevel: enumVar(env, 'LOG_LEVEL', 'info', ['debug', 'info', 'warn', 'error'])
  }
  if (config.shutdownDelayMs >= config.shutdownTimeoutMs) {
    throw new ConfigError(`SHUTDOWN_DELAY_SECONDS (${config.shutdownDelayMs / 1000}) must be less than ` +
      `SHUTDOWN_TIMEOUT_SECONDS (${config.shutdownTimeoutMs / 1000})`)
  }
  return config
}

module.exports = { parseConfig, ConfigError, MAX_SLEEP_MS }
