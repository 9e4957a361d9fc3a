use cvtest::cv_test;

#[cv_test(network = "auto", host = "10.0.0.1")]
fn auto_has_no_host() {}

#[cv_test(network = "automatic")]
fn not_auto() {}

fn main() {}
