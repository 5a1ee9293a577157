//! Query-string parameters, read one way by every route: each route names the parameters it
//! takes, and anything else (an unknown name, a repeated single-valued one, a number that is
//! not one, a value out of range) is a 400 naming the parameter. Run names hold `/`, `?` and
//! `=`, so references always travel URL-encoded in a parameter, never in the path.

use crate::error::{ApiError, ApiResult};

/// The parameters of one request.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `query` (the part after `?`), allowing only the names in `allowed`.
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> ApiResult<Params> {
        let query = query.unwrap_or("");
        let mut pairs = Vec::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(ApiError::bad_request(if allowed.is_empty() {
                    format!("unknown parameter '{k}': this route takes none")
                } else {
                    format!(
                        "unknown parameter '{k}': this route takes {}",
                        allowed.join(", ")
                    )
                }));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params { pairs })
    }

    /// Every value given for `name`, in order (a parameter that may be repeated).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of `name`, if given; given twice is an error.
    pub fn opt(&self, name: &str) -> ApiResult<Option<&str>> {
        match self.all(name).as_slice() {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(ApiError::bad_request(format!(
                "parameter '{name}' is given more than once"
            ))),
        }
    }

    /// The value of `name`, which must be given and not empty.
    pub fn req(&self, name: &str) -> ApiResult<&str> {
        match self.opt(name)? {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(ApiError::bad_request(format!(
                "parameter '{name}' is empty"
            ))),
            None => Err(ApiError::bad_request(format!(
                "parameter '{name}' is required"
            ))),
        }
    }

    /// The whole number `name`, if given, within `lo..=hi`.
    pub fn opt_u64(&self, name: &str, lo: u64, hi: u64) -> ApiResult<Option<u64>> {
        let Some(text) = self.opt(name)? else {
            return Ok(None);
        };
        let n: u64 = text.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "parameter '{name}' is '{text}', not a whole number"
            ))
        })?;
        if !(lo..=hi).contains(&n) {
            return Err(ApiError::bad_request(format!(
                "parameter '{name}' is {n}, outside {lo} to {hi}"
            )));
        }
        Ok(Some(n))
    }

    /// `name` as one of `words`, or `default` when not given.
    pub fn word<'a>(&self, name: &str, words: &[&'a str], default: &'a str) -> ApiResult<&'a str> {
        match self.opt(name)? {
            None => Ok(default),
            Some(v) => words.iter().copied().find(|w| *w == v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "parameter '{name}' is '{v}': it takes {}",
                    words.join(", ")
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_references_keep_their_slashes_and_question_marks() {
        let p = Params::parse(
            Some("ref=sweep%2Flr%3D0.1%3F_step%3D5&width=10"),
            &["ref", "width"],
        )
        .unwrap();
        assert_eq!(p.req("ref").unwrap(), "sweep/lr=0.1?_step=5");
        assert_eq!(p.opt_u64("width", 1, 10).unwrap(), Some(10));
    }

    #[test]
    fn unknown_repeated_and_out_of_range_parameters_are_refused() {
        assert!(Params::parse(Some("reff=a"), &["ref"]).is_err());
        let p = Params::parse(Some("ref=a&ref=b&width=0&to=x"), &["ref", "width", "to"]).unwrap();
        assert!(p.req("ref").is_err());
        assert_eq!(p.all("ref"), ["a", "b"]);
        assert!(p.opt_u64("width", 1, 10).is_err());
        assert!(p.opt_u64("to", 0, 10).is_err());
    }
}
