"""The root watcher: rebuilds every newly posted epoch root and raises an alarm on the first
false leaf (docs/oracle.md, "Rebuilding a root")."""
