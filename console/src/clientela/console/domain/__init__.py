"""Pure logic of the console: charts as SVG markup, summaries of the read model."""
