'use strict'

// neostandard: the maintained successor of standard, from the Fastify ecosystem.
module.exports = require('neostandard')({})
