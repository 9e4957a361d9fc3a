use cvtest::cv_test;

#[cv_test(pids = 64)]
fn number() {}

fn main() {}
