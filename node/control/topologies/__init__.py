"""Example network topologies (TOML) shipped with qkdnode; read them with
`node.control.topology.example_topology`."""
