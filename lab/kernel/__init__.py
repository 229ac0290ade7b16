"""Realisation in the kernel: namespaces, links, ownership, state, captures, impairments."""
