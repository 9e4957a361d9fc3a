use cvtest::cv_test;

#[cv_test(memory = "1X")]
fn bad_unit() {}

fn main() {}
