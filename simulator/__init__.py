"""tpe-sim's virtual payment terminal: sans-IO protocol, cards and engine, Bumble at the edge."""
