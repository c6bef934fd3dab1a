"""Everything that touches PostgreSQL: the embedded server, connections, schema, queries."""
