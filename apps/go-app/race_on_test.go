//go:build race

package main

// raceBuild makes the process tests build the app with -race when the tests run with -race.
const raceBuild = true
