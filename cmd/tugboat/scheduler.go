package main

// SchedulerConfig is the scheduler section of Config (squashed into it: the keys it
// declares are top-level unless their mapstructure tags nest them).
type SchedulerConfig struct{}

// schedulerComponent is the server's scheduler.
func schedulerComponent() component {
	return component{name: "scheduler"}
}
