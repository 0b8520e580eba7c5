use super::BatchIter;

/// Skips `skip` rows, then passes at most `fetch` rows and stops pulling.
pub fn limit(input: BatchIter, skip: usize, fetch: Option<usize>) -> BatchIter {
    let mut to_skip = skip;
    let mut left = fetch.unwrap_or(usize::MAX);
    let mut input = input;
    Box::new(std::iter::from_fn(move || loop {
        if left == 0 {
            return None;
        }
        let batch = match input.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        let rows = batch.num_rows();
        if to_skip >= rows {
            to_skip -= rows;
            continue;
        }
        let start = to_skip;
        to_skip = 0;
        let take = (rows - start).min(left);
        left -= take;
        return Some(Ok(batch.slice(start, take)));
    }))
}
