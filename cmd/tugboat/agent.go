package main

// AgentConfig is the agent section of Config (squashed into it: the keys it
// declares are top-level unless their mapstructure tags nest them).
type AgentConfig struct{}

// agentComponent is the server's agent.
func agentComponent() component {
	return component{name: "agent"}
}
