use cvtest::cv_test;

#[cv_test(caps = "NET_ADMIN,SYS_ADMN")]
fn misspelt() {}

#[cv_test(caps = "all")]
fn everything() {}

fn main() {}
