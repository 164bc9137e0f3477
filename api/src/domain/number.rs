//! `check_range`: bounded integers (counts, limits) reported with `NUMBER_OUT_OF_RANGE`.

use std::fmt::Display;
use std::ops::RangeInclusive;

use super::{FieldError, ValidationCode};

/// Returns `value` when it lies in `range`, else a `NUMBER_OUT_OF_RANGE` error naming the
/// bounds.
pub fn check_range<T>(value: T, range: RangeInclusive<T>) -> Result<T, FieldError>
where
    T: PartialOrd + Display + Copy,
{
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(FieldError::new(
            ValidationCode::NumberOutOfRange,
            format!(
                "The number {value} is out of range; use a value from {} to {}.",
                range.start(),
                range.end()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_inside_the_bounds_pass_and_others_are_out_of_range() {
        let cases: &[(i64, bool)] = &[
            (i64::MIN, false),
            (-1, false),
            (0, true),
            (1, true),
            (100, true),
            (101, false),
            (i64::MAX, false),
        ];
        for (value, ok) in cases {
            let result = check_range(*value, 0..=100);
            assert_eq!(result.is_ok(), *ok, "{value}");
            if let Err(error) = result {
                assert_eq!(error.code, ValidationCode::NumberOutOfRange);
                assert!(error.message.contains("0 to 100"), "{}", error.message);
            }
        }
    }
}
