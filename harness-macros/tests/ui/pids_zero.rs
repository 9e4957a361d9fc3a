use cvtest::cv_test;

#[cv_test(pids = "0")]
fn no_pids() {}

fn main() {}
