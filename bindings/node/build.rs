//! Link settings for a Node.js addon (napi-rs).

fn main() {
    napi_build::setup();
}
