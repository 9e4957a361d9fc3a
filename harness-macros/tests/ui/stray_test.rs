use cvtest::cv_test;

#[cv_test(memory = "64M")]
#[test]
fn tested_twice() {}

fn main() {}
