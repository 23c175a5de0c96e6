// The graph schema deploy applies when component neo4j is on and neo4j_schema_file names this file
// (docs/neo4j.md). Only named CREATE ... CONSTRAINT|INDEX <name> IF NOT EXISTS and
// DROP CONSTRAINT|INDEX <name> IF EXISTS statements, each ending with ';'. The file is additive:
// removing a line keeps the object; write DROP ... IF EXISTS to remove one.

// Documents and the chunks a RAG pipeline cuts them into.
CREATE CONSTRAINT document_id IF NOT EXISTS FOR (d:Document) REQUIRE d.id IS UNIQUE;
CREATE CONSTRAINT chunk_id IF NOT EXISTS FOR (c:Chunk) REQUIRE c.id IS UNIQUE;
CREATE INDEX chunk_source IF NOT EXISTS FOR (c:Chunk) ON (c.source);

// Entities extracted from the chunks, merged by name.
CREATE CONSTRAINT entity_name IF NOT EXISTS FOR (e:Entity) REQUIRE e.name IS UNIQUE;
CREATE FULLTEXT INDEX entity_names IF NOT EXISTS FOR (e:Entity) ON EACH [e.name, e.description];
