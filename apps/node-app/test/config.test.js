'use strict'

const { test } = require('node:test')
const assert = require('node:assert/strict')
const { parseConfig, ConfigError } = require('../src/config')

test('defaults', () => {
  assert.deepEqual(parseConfig({}), {
    port: 8080,
    version: 'dev',
    sleepMaxMs: 2000,
    shutdownDelayMs: 0,
    shutdownTimeoutMs: 90000,
    fault: '',
    shutdownMode: 'graceful',
    telemetry: true,
    logLevel: 'info'
  })
})

test('valid values', () => {
  assert.deepEqual(parseConfig({
    PORT: '9090',
    APP_VERSION: 'v1.2.3',
    SLEEP_MAX_MS: '60000',
    SHUTDOWN_DELAY_SECONDS: '5',
    SHUTDOWN_TIMEOUT_SECONDS: '125',
    FAULT: 'unready',
    SHUTDOWN_MODE: 'immediate',
    TELEMETRY: 'off',
    LOG_LEVEL: 'debug'
  }), {
    port: 9090,
    version: 'v1.2.3',
    sleepMaxMs: 60000,
    shutdownDelayMs: 5000,
    shutdownTimeoutMs: 125000,
    fault: 'unready',
    shutdownMode: 'immediate',
    telemetry: false,
    logLevel: 'debug'
  })
})

test('invalid values give one-line errors naming the variable', () => {
  const cases = [
    ['PORT', 'abc', 'invalid PORT "abc"'],
    ['PORT', '65536', 'PORT'],
    ['PORT', '-1', 'PORT'],
    ['PORT', '80a', 'PORT'],
    ['SLEEP_MAX_MS', '60001', 'SLEEP_MAX_MS'],
    ['SLEEP_MAX_MS', '1.5', 'SLEEP_MAX_MS'],
    ['SHUTDOWN_DELAY_SECONDS', 'x', 'SHUTDOWN_DELAY_SECONDS'],
    ['SHUTDOWN_TIMEOUT_SECONDS', '0', 'SHUTDOWN_TIMEOUT_SECONDS'],
    ['SHUTDOWN_DELAY_SECONDS', '90', 'must be less than SHUTDOWN_TIMEOUT_SECONDS'],
    ['FAULT', 'explode', 'want one of crash, unready'],
    ['SHUTDOWN_MODE', 'fast', 'want one of graceful, immediate'],
    ['TELEMETRY', 'maybe', 'TELEMETRY'],
    ['LOG_LEVEL', 'loud', 'LOG_LEVEL']
  ]
  for (const [name, value, expected] of cases) {
    assert.throws(() => parseConfig({ [name]: value }), (err) => {
      assert.ok(err instanceof ConfigError, `${name}=${value}`)
      assert.ok(err.message.includes(expected), `${name}=${value}: ${err.message}`)
      assert.ok(!err.message.includes('\n'))
      return true
    })
  }
})
