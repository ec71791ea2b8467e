"""Test plugin: assets registered by module, by object, and (on request) a clashing one."""
