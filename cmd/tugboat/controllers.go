package main

// ControllersConfig is the controllers section of Config (squashed into it: the keys it
// declares are top-level unless their mapstructure tags nest them).
type ControllersConfig struct{}

// controllersComponent is the server's controllers.
func controllersComponent() component {
	return component{name: "controllers"}
}
