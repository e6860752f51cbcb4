"""One module per subcommand; ``slocal_cli.main`` registers them."""
