\set ECHO none
-- test/preamble.sql: psql settings shared by every pg_regress test file, so
-- that the expected output holds only the pgTAP lines.
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
\set ON_ERROR_STOP true
SET client_min_messages = warning;
