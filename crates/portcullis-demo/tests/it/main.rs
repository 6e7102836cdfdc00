//! Integration tests: drive the demo upstream with rmcp's own client, over the
//! real `portcullis-demo-upstream` binary (stdio and `--http`) and over an
//! in-process `serve_http`.

mod http;
mod stdio;
mod support;
