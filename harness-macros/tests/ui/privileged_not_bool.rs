use cvtest::cv_test;

#[cv_test(privileged = 1)]
fn number() {}

#[cv_test(privileged = "yes")]
fn word() {}

fn main() {}
