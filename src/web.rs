//! wasm-bindgen API (placeholder)
