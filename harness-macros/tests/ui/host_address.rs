use cvtest::cv_test;

#[cv_test(network = "10.0.0.2/24", host = "10.0.1.1")]
fn host_outside() {}

#[cv_test(host = "10.0.0.2", network = "10.0.0.2/24")]
fn host_is_container() {}

fn main() {}
