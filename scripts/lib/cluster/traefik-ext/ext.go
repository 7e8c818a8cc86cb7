// Package ext stands in for Traefik's nested "dynamic/ext" module. Traefik's go.mod replaces it
// with a directory that the module proxy's zip does not contain; upstream's open-source build
// uses empty extension types, so empty types give the same configuration schema.
package ext

// HTTP extends Traefik's dynamic HTTP configuration (nothing in the open-source build).
type HTTP struct{}

// Router extends Traefik's router configuration (nothing in the open-source build).
type Router struct{}

// RouterIng is the ingress-annotation form of Router.
type RouterIng struct{}

// ToRouter converts the ingress-annotation form to a Router.
func (RouterIng) ToRouter() Router { return Router{} }
