use cvtest::cv_test;

#[cv_test(network = "10.0.0.300/24")]
fn bad_address() {}

#[cv_test(network = "10.0.0.2")]
fn no_prefix() {}

fn main() {}
