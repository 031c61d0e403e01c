"""The bottom floor, no torch: files written atomically (files), output files claimed before a run does any
work (claims), the console's messages, progress bars and tables (console), the user's option defaults from
hashtagger.toml (config), optional extras and their install hints (extras), dataclasses from JSON (structs), option
ranges that typer and the library share (ranges), the memory this process may use, cgroup limits included (memory)."""
