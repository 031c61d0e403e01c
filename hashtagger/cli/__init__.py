"""The `hashtagger` command (typer only): the app and its shared helpers (app), one module per command (train,
export, tag, review, adapt, explain, evaluate), and the entry point that registers them all (main). Nothing imports this
package."""
