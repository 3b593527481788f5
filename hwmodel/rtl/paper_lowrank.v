// LQER-MXINT's low-rank path simulated stage to stage (paper_mx.v holds the synthesis model,
// whose casts and block adder take their inputs from ports): a quantizer from the fixed-point
// accumulators to an MXINT block, and the whole design with every stage fed by the previous
// stage's outputs. Needs int_units.v, fp_units.v, mx_units.v, mx_pipe.v.
`default_nettype none
// one file holds a family of modules, not one module named after the file:
/* verilator lint_off DECLFILENAME */

// Quantizer of 16 fixed-point values (VW-bit two's complement, F fraction bits) to one MXINT-LB
// block, as mxsim.quantize (OCP MX v1.0, floor scale rule, round to nearest even):
//   p = floor(log2 max|v_i|)  (the leading one of the OR of the magnitudes: the max's position)
//   scale = p - F + 127 (E8M0; 0 for an all-zero block), q_i = rne(v_i * 2^(LB-2-p)) clamped
//   to +-(2^(LB-1)-1). Needs F <= 127 and VW - F <= 128 (no scale clamp): true for 32/16.
module mx_quant16 #(parameter VW = 32, parameter F = 16, parameter LB = 8) (
    input wire [16*VW-1:0]  v,
    output wire [7:0]        scale,
    output wire [16*LB-1:0]  q
);
    localparam PB = $clog2(VW);                             // bits of a bit position
    localparam signed [VW:0] QMAX = {{(VW + 2 - LB){1'b0}}, {(LB - 1){1'b1}}};   // 2^(LB-1) - 1
    localparam integer BIAS_I = 127 - F, LB2_I = LB - 2;
    localparam signed [PB:0] LB2 = LB2_I[PB:0];
    wire [16*VW-1:0] mags;
    genvar i;
    generate
        for (i = 0; i < 16; i = i + 1) begin : g_mag
            wire signed [VW-1:0] vi = v[i*VW +: VW];
            assign mags[i*VW +: VW] = vi[VW-1] ? -vi : vi;   // |-2^(VW-1)| = 2^(VW-1) fits unsigned
        end
    endgenerate
    reg [VW-1:0] ors;
    reg [PB-1:0] p;
    integer j;
    always @* begin
        ors = {VW{1'b0}};
        for (j = 0; j < 16; j = j + 1)
            ors = ors | mags[j*VW +: VW];
        p = {PB{1'b0}};
        for (j = 0; j < VW; j = j + 1)
            if (ors[j]) p = j[PB-1:0];
    end
    wire zero = (ors == {VW{1'b0}});
    wire [7:0] sc = {{(8 - PB){1'b0}}, p} + BIAS_I[7:0];
    assign scale = zero ? 8'd0 : sc;
    // right shift r = p - (LB - 2) when > 0 (round to nearest even), else an exact left shift
    wire signed [PB:0] r = $signed({1'b0, p}) - LB2;
    wire right = (r > 0);
    /* verilator lint_off UNUSEDSIGNAL */
    wire [PB:0] nr = -r;                                    // (both amounts < VW: the low PB bits)
    /* verilator lint_on UNUSEDSIGNAL */
    wire [PB-1:0] ramt = r[PB-1:0], lamt = nr[PB-1:0];
    wire [VW-1:0] half = {{(VW - 1){1'b0}}, 1'b1} << (ramt - 1'b1);
    wire [VW-1:0] keep = {VW{1'b1}} << ramt;
    generate
        for (i = 0; i < 16; i = i + 1) begin : g_q
            wire signed [VW-1:0] vi = v[i*VW +: VW];
            wire signed [VW-1:0] fl = vi >>> ramt;           // floor(v / 2^r)
            wire [VW-1:0] below = vi & ~keep;                 // the bits shifted out
            wire up = right & ((below > half) | ((below == half) & fl[0]));
            wire signed [VW:0] c = right ? $signed({fl[VW-1], fl}) + $signed({{VW{1'b0}}, up})
                                         : $signed({vi[VW-1], vi}) <<< lamt;
            wire signed [VW:0] cc = (c > QMAX) ? QMAX : (c < -QMAX) ? -QMAX : c;
            /* verilator lint_off UNUSEDSIGNAL */
            wire [VW:0] cu = cc;                              // the clamped code fits LB bits
            /* verilator lint_on UNUSEDSIGNAL */
            assign q[i*LB +: LB] = cu[LB-1:0];
        end
    endgenerate
endmodule

// LQER-MXINT's main path and low-rank path (rank 16) as one clocked design, each stage fed by
// the previous stage's outputs: mm1 = x.W (one output column) and mm2 = x.A (16 columns of A,
// 16 MX dot units) accumulate over the vector's blocks (MX dot, 16 lanes, 32-bit saturating
// fixed-point accumulators with 16 fraction bits, restarted on `in_first`); in the cycle after
// `in_last` the 16 values of xA are quantized to one MXINT-LB block (mx_quant16), multiplied by
// the column of B (mm3: one LB x LB MX dot, aligned to the same fixed point) and added to mm1
// (saturating). All stage results are registered together: out_valid 2 cycles after in_last.
// b/sb (B's column, 16 ranks) are taken with the last block. Back-to-back vectors are allowed.
module paper_lqer_lowrank #(parameter XB = 8, parameter WB = 4, parameter LB = 8) (
    input wire                 clk,
    input wire                 rst,
    input wire                 in_valid,
    input wire                 in_first,
    input wire                 in_last,
    input wire [16*XB-1:0]     x,
    input wire [7:0]           sx,
    input wire [16*WB-1:0]     w,
    input wire [7:0]           sw,
    input wire [16*16*LB-1:0]  a,       // column j of A (this block's 16 rows) in a[j*16*LB +: 16*LB]
    input wire [16*8-1:0]      sa,      // its scale code in sa[j*8 +: 8]
    input wire [16*LB-1:0]     b,
    input wire [7:0]           sb,
    output reg                 out_valid,
    output reg [31:0]          y1,      // x.W (fixed point, F = 16)
    output reg [16*32-1:0]     xa,      // x.A, 16 values (fixed point, F = 16)
    output reg [16*LB-1:0]     q,       // xA quantized: element codes
    output reg [7:0]           se,      // and its scale code
    output reg [31:0]          y3,      // (xA)_q . B (fixed point, F = 16)
    output reg [31:0]          y        // y1 + y3, saturating
);
    localparam SW1 = XB + WB - 1 + 4, SW2 = XB + LB - 1 + 4, SW3 = 2 * LB - 1 + 4;
    /* verilator lint_off UNUSEDSIGNAL */
    wire nan1;          // a fixed-point accumulator has no NaN (the caller flags NaN scales)
    wire [15:0] v2;     // the 16 mm2 accumulators run in lockstep with mm1: their valids equal v1
    /* verilator lint_on UNUSEDSIGNAL */
    wire signed [SW1-1:0] s1;
    wire signed [9:0] e1;
    wire v1;
    wire [31:0] acc1;
    mx_dot #(.A(XB), .B(WB), .K(16), .QSUM(-(XB - 2) - (WB - 2))) mm1 (
        .xa(x), .xb(w), .sa(sx), .sb(sw), .s(s1), .e(e1), .nan(nan1));
    mx_acc_pipe #(.SW(SW1), .FP32(0), .W(32), .F(16), .SAT(1), .STAGES(0)) acc_mm1 (
        .clk(clk), .rst(rst), .in_valid(in_valid), .in_first(in_first), .in_last(in_last),
        .s(s1), .e(e1), .nan_in(nan1), .out_valid(v1), .acc(acc1));
    wire [16*32-1:0] acc2;
    genvar j;
    generate
        for (j = 0; j < 16; j = j + 1) begin : g_mm2
            /* verilator lint_off UNUSEDSIGNAL */
            wire nan2;
            /* verilator lint_on UNUSEDSIGNAL */
            wire signed [SW2-1:0] s2;
            wire signed [9:0] e2;
            mx_dot #(.A(XB), .B(LB), .K(16), .QSUM(-(XB - 2) - (LB - 2))) mm2 (
                .xa(x), .xb(a[j*16*LB +: 16*LB]), .sa(sx), .sb(sa[j*8 +: 8]), .s(s2), .e(e2), .nan(nan2));
            mx_acc_pipe #(.SW(SW2), .FP32(0), .W(32), .F(16), .SAT(1), .STAGES(0)) acc_mm2 (
                .clk(clk), .rst(rst), .in_valid(in_valid), .in_first(in_first), .in_last(in_last),
                .s(s2), .e(e2), .nan_in(nan2), .out_valid(v2[j]), .acc(acc2[j*32 +: 32]));
        end
    endgenerate
    reg [16*LB-1:0] b_r;
    reg [7:0] sb_r;
    always @(posedge clk) if (in_valid & in_last) begin b_r <= b; sb_r <= sb; end
    // stage 2, while v1: quantize xA, mm3, the final add
    wire [16*LB-1:0] q_w;
    wire [7:0] se_w;
    mx_quant16 #(.VW(32), .F(16), .LB(LB)) quant (.v(acc2), .scale(se_w), .q(q_w));
    /* verilator lint_off UNUSEDSIGNAL */
    wire nan3;
    /* verilator lint_on UNUSEDSIGNAL */
    wire signed [SW3-1:0] s3;
    wire signed [9:0] e3;
    mx_dot #(.A(LB), .B(LB), .K(16), .QSUM(-2 * (LB - 2))) mm3 (
        .xa(q_w), .xb(b_r), .sa(se_w), .sb(sb_r), .s(s3), .e(e3), .nan(nan3));
    wire signed [31:0] y3_w, y_w;
    mx_align_fixed #(.SW(SW3), .W(32), .F(16), .SAT(1)) al3 (.s(s3), .e(e3), .aligned(y3_w));
    mx_add_fixed #(.W(32), .SAT(1)) add (.acc_in(acc1), .aligned(y3_w), .acc_out(y_w));
    always @(posedge clk) begin
        out_valid <= rst ? 1'b0 : v1;
        if (v1) begin
            y1 <= acc1; xa <= acc2; q <= q_w; se <= se_w; y3 <= y3_w; y <= y_w;
        end
    end
endmodule

`default_nettype wire
