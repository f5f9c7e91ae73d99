// Weight element access for f32 weights: one element per array entry.
alias WData = f32;

fn load_w(i: u32) -> f32 {
    return w_data[i];
}
