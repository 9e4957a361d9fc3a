use cvtest::cv_test;

#[cv_test(timeout = "30")]
fn no_unit() {}

#[cv_test(timeout = "10 parsecs")]
fn unknown_unit() {}

fn main() {}
