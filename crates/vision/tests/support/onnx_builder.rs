//! Writes tiny ONNX models by hand (protobuf wire format) so tests can run
//! real ONNX Runtime sessions on graphs whose outputs they control.

/// A protobuf message under construction.
#[derive(Default)]
pub struct Msg(Vec<u8>);

impl Msg {
    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    pub fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, 0);
        self.varint(v as u64);
        self
    }
    pub fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    pub fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

const FLOAT: i64 = 1;

/// `TensorProto` holding float32 `values` with `dims`.
pub fn tensor(name: &str, dims: &[i64], values: &[f32]) -> Msg {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut t = Msg::default();
    for &d in dims {
        t = t.int(1, d);
    }
    t.int(2, FLOAT).str(8, name).bytes(9, &raw)
}

/// `ValueInfoProto` for a float32 tensor with fixed dims.
pub fn value_info(name: &str, dims: &[i64]) -> Msg {
    let mut shape = Msg::default();
    for &d in dims {
        shape = shape.msg(1, Msg::default().int(1, d));
    }
    let tensor_type = Msg::default().int(1, FLOAT).msg(2, shape);
    Msg::default()
        .str(1, name)
        .msg(2, Msg::default().msg(1, tensor_type))
}

/// `NodeProto` with optional integer attributes.
pub fn node(op: &str, inputs: &[&str], output: &str, int_attrs: &[(&str, i64)]) -> Msg {
    let mut n = Msg::default();
    for i in inputs {
        n = n.str(1, i);
    }
    n = n.str(2, output).str(3, output).str(4, op);
    for (name, v) in int_attrs {
        // AttributeProto: name = 1, i = 3, type = 20 (INT = 2)
        n = n.msg(5, Msg::default().str(1, name).int(3, *v).int(20, 2));
    }
    n
}

/// A model whose single output is the constant `output` (shape
/// `output_dims`), made to depend on the image input through `sum(x) * 0` so
/// the graph is a real function of its input.
pub fn constant_output_model(input_dims: &[i64], output_dims: &[i64], output: &[f32]) -> Vec<u8> {
    let graph = Msg::default()
        .msg(1, node("ReduceSum", &["images"], "sum", &[("keepdims", 0)]))
        .msg(1, node("Mul", &["sum", "zero"], "nothing", &[]))
        .msg(1, node("Add", &["predictions", "nothing"], "output0", &[]))
        .str(2, "constant_head")
        .msg(5, tensor("predictions", output_dims, output))
        .msg(5, tensor("zero", &[], &[0.0]))
        .msg(11, value_info("images", input_dims))
        .msg(12, value_info("output0", output_dims));
    Msg::default()
        .int(1, 8) // ir_version
        .str(2, "streamer-tests")
        .msg(7, graph)
        .msg(8, Msg::default().str(1, "").int(2, 13)) // opset 13
        .into_bytes()
}
