#[allow(dead_code)]
mod gpu;

fn main() {}
