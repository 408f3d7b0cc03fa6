"""The only code that forks, execs, signals or kills, and resolves users for it."""
