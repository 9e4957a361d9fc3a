use cvtest::cv_test;

#[cv_test(memory = "1G", pids = "64", memory = "2G")]
fn twice() {}

fn main() {}
