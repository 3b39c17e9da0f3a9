mod gpu;

fn main() {}
