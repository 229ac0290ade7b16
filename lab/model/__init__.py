"""The inert model of a lab: topology files, units, impairment profiles and the plan."""
