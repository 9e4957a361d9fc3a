use cvtest::cv_test;

#[cv_test]
async fn no_runtime() {}

fn main() {}
