"""The root watcher: rebuilds every newly posted epoch root, raises an alarm on the first
false leaf (docs/oracle.md, "Rebuilding a root") and, with a challenger key, proves it false
on chain (docs/verification.md, "The watcher's challenges")."""
