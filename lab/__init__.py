"""The lab: topology files become namespaces, veth links, impairments and node daemons.

Layers, each usable alone: `topology` (YAML -> validated model), `plan` (model -> every name,
address and route), `netns` (plan -> kernel objects, via pyroute2), `ownership` (finding what a
lab owns without its state file), `state` (the run directory), `lab` (the `Lab` API), `cli`.
"""
