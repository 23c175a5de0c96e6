// The scenario's schema (neo4j_schema_file): one constraint, one index; verify.yml asks Neo4j for both.
CREATE CONSTRAINT stack_document_id IF NOT EXISTS FOR (d:Document) REQUIRE d.id IS UNIQUE;
CREATE INDEX stack_chunk_source IF NOT EXISTS FOR (c:Chunk) ON (c.source);
