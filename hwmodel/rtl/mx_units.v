// MX datapath units (Verilog-2005): the block dot product, the cross-block accumulators,
// the shared-exponent (max) unit and the LLM.int8()-style scatter/gather path.
// Needs int_units.v and fp_units.v.
`default_nettype none
// one file holds a family of modules, not one module named after the file:
/* verilator lint_off DECLFILENAME */


// MX block dot product: K lanes of A-bit x B-bit two's-complement element codes (lane 0 in
// the low bits), K multipliers, an adder tree with growing widths, and the shared-exponent
// adder. Output: the exact integer sum S and the exponent E with
//   value = S * 2^E,  E = sa + sb - EBIAS + QSUM
// (QSUM = qa + qb, the implicit element scales: MXINTb has q = -(b-2)).
// MXINT codes are symmetric (never -2^(b-1)), so a product fits A+B-1 bits (mxsim's
// datapath_widths); the multiplier outputs are truncated to that. A scale code 0xFF (NaN)
// on either side raises nan.
module mx_dot #(parameter A = 8, parameter B = 8, parameter K = 32,
                parameter EBIAS = 254, parameter QSUM = -12) (
    input wire [K*A-1:0]                   xa,
    input wire [K*B-1:0]                   xb,
    input wire [7:0]                       sa,
    input wire [7:0]                       sb,
    output wire signed [A+B-1+$clog2(K)-1:0] s,
    output wire signed [9:0]                e,
    output wire nan
);
    localparam PW = A + B - 1;
    wire [K*PW-1:0] prods;
    genvar i;
    generate
        for (i = 0; i < K; i = i + 1) begin : g_lane
            // the product's top bit only repeats its sign for symmetric codes (truncated below)
            /* verilator lint_off UNUSEDSIGNAL */
            wire signed [A+B-1:0] p;
            /* verilator lint_on UNUSEDSIGNAL */
            int_mul #(.A(A), .B(B)) mul (.a(xa[i*A +: A]), .b(xb[i*B +: B]), .p(p));
            assign prods[i*PW +: PW] = p[PW-1:0];
        end
    endgenerate
    adder_tree #(.W(PW), .N(K)) tree (.x(prods), .y(s));
    wire [8:0] esum;
    exp_add #(.W(8)) eadd (.a(sa), .b(sb), .s(esum));
    localparam integer EOFF_I = QSUM - EBIAS;
    localparam signed [9:0] EOFF = EOFF_I[9:0];
    assign e = $signed({1'b0, esum}) + EOFF;
    assign nan = (sa == 8'hff) | (sb == 8'hff);
endmodule

// One step of the fixed-point cross-block accumulator (combinational):
//   aligned = floor(S * 2^(E + F))      (arithmetic shift: truncation toward -inf)
//   acc_out = acc_in + aligned          in W-bit two's complement,
// SAT = 1: aligned is clamped to [-2^(W-1), 2^(W-1)-1] and so is the sum;
// SAT = 0: both wrap modulo 2^W.
module mx_acc_fixed #(parameter SW = 20, parameter XW = 10, parameter W = 32,
                      parameter F = 16, parameter SAT = 1) (
    input wire signed [W-1:0]  acc_in,
    input wire signed [SW-1:0] s,
    input wire signed [XW-1:0] e,
    output wire signed [W-1:0] acc_out
);
    wire signed [W-1:0] aligned;
    mx_align_fixed #(.SW(SW), .XW(XW), .W(W), .F(F), .SAT(SAT)) align (.s(s), .e(e), .aligned(aligned));
    mx_add_fixed #(.W(W), .SAT(SAT)) add (.acc_in(acc_in), .aligned(aligned), .acc_out(acc_out));
endmodule

// The alignment half of mx_acc_fixed: aligned = floor(S * 2^(E + F)), clamped when SAT = 1,
// wrapped to W bits when SAT = 0 (no accumulator in the path: a pipeline stage can follow).
module mx_align_fixed #(parameter SW = 20, parameter XW = 10, parameter W = 32,
                        parameter F = 16, parameter SAT = 1) (
    input wire signed [SW-1:0] s,
    input wire signed [XW-1:0] e,
    output wire signed [W-1:0] aligned
);
    localparam VW = SW + W;                    // shifter width
    localparam signed [W-1:0] MAXV = {1'b0, {(W-1){1'b1}}};
    localparam signed [W-1:0] MINV = {1'b1, {(W-1){1'b0}}};
    localparam integer F_I = F, W_I = W, SW_I = SW;
    localparam signed [XW+1:0] F_X = F_I[XW+1:0];
    localparam signed [XW+1:0] W_X = W_I[XW+1:0];
    localparam [XW+1:0]        SW_X = SW_I[XW+1:0];
    wire signed [XW+1:0] sh = {{2{e[XW-1]}}, e} + F_X;   // left shift when >= 0
    wire left = (sh >= 0);
    wire big_left = (sh >= W_X);               // any non-zero S overflows W bits
    wire [XW+1:0] rsh = -sh;
    wire big_right = (rsh >= SW_X);            // S shifted out: 0 or -1
    wire [$clog2(W)-1:0]  lamt = sh[$clog2(W)-1:0];
    wire [$clog2(SW)-1:0] ramt = rsh[$clog2(SW)-1:0];
    wire signed [VW-1:0] sx = {{W{s[SW-1]}}, s};
    // (each arm is signed on its own: an unsigned arm would make >>> a logical shift)
    wire signed [VW-1:0] v_l = big_left ? $signed({VW{1'b0}}) : (sx <<< lamt);
    wire signed [VW-1:0] v_r = big_right ? $signed({VW{s[SW-1]}}) : (sx >>> ramt);
    wire signed [VW-1:0] v = left ? v_l : v_r;
    wire s_nz = (s != 0);
    // v fits in W bits iff its bits [VW-1:W-1] are all equal
    wire fits = (v[VW-1:W-1] == {(VW-W+1){v[W-1]}});
    wire ovf = (left & big_left & s_nz) | ~fits;
    assign aligned = (SAT != 0 && ovf) ? (s[SW-1] ? MINV : MAXV) : v[W-1:0];
endmodule

// The add half of mx_acc_fixed: acc_out = acc_in + aligned in W bits, saturating (SAT = 1)
// or wrapping (SAT = 0).
module mx_add_fixed #(parameter W = 32, parameter SAT = 1) (
    input wire signed [W-1:0]  acc_in,
    input wire signed [W-1:0]  aligned,
    output wire signed [W-1:0] acc_out
);
    localparam signed [W-1:0] MAXV = {1'b0, {(W-1){1'b1}}};
    localparam signed [W-1:0] MINV = {1'b1, {(W-1){1'b0}}};
    wire signed [W:0] sum = acc_in + aligned;
    wire sum_ovf = (sum[W] != sum[W-1]);
    assign acc_out = (SAT != 0 && sum_ovf) ? (sum[W] ? MINV : MAXV) : sum[W-1:0];
endmodule

// One step of the FP32 cross-block accumulator (combinational), the cvfpu MXDOTP
// behaviour: acc_out = fl32(acc_in + S * 2^E) with the exact sum rounded ONCE (RNE,
// subnormals kept). NaN (acc or nan_in) gives 0x7FC00000; an infinite acc stays.
module mx_acc_fp32 #(parameter SW = 20, parameter XW = 10) (
    input wire [31:0]          acc_in,
    input wire signed [SW-1:0] s,
    input wire signed [XW-1:0] e,
    input wire nan_in,
    output wire [31:0]          acc_out
);
    localparam MB = (SW > 24) ? SW : 24;
    localparam IW = 12;
    wire [7:0] ab = acc_in[30:23];
    wire a_nan = (ab == 8'hff) & (acc_in[22:0] != 0);
    wire a_inf = (ab == 8'hff) & (acc_in[22:0] == 0);
    // hidden bit at 23 over the zero-extended fraction (MB >= 24)
    wire [MB-1:0] mx = {{(MB - 23){1'b0}}, acc_in[22:0]} | ({{(MB - 1){1'b0}}, ab != 0} << 23);
    wire signed [IW-1:0] ex = $signed({4'b0000, (ab == 0) ? 8'd1 : ab}) - 12'sd150;
    wire sy = s[SW-1];
    wire [SW-1:0] mys = sy ? -s : s;
    wire [MB-1:0] my;
    generate
        if (MB > SW) begin : g_pad
            assign my = {{(MB - SW){1'b0}}, mys};
        end else begin : g_same
            assign my = mys;
        end
    endgenerate
    wire signed [IW-1:0] ey = {{(IW - XW){e[XW-1]}}, e};
    wire [31:0] core;
    fp_add_exact #(.MB(MB), .EW(8), .MW(23), .XW(IW)) add (
        .sx(acc_in[31]), .mx(mx), .ex(ex), .sy(sy), .my(my), .ey(ey), .y(core));
    assign acc_out = (nan_in | a_nan) ? 32'h7fc00000 : a_inf ? acc_in : core;
endmodule

// Shared exponent of a block (the quantizer's max unit): max of N unsigned exponent fields.
module shared_exp #(parameter EW = 8, parameter N = 32) (
    input wire [N*EW-1:0] ex,
    output wire [EW-1:0]   emax
);
    max_tree #(.W(EW), .N(N)) mt (.x(ex), .y(emax));
endmodule

// LLM.int8()-style outlier path for K activation columns (FP16): per column a threshold
// comparator on |x| (15-bit magnitude compare), a scatter mux into the low- and the
// high-precision path (the other path gets zero), and a gather mux that takes each output
// column from the path it was sent to.
module llm_int8_path #(parameter K = 16) (
    input wire [K*16-1:0] x,
    input wire [14:0]     thr,
    input wire [K*16-1:0] lo_res,
    input wire [K*16-1:0] hi_res,
    output wire [K*16-1:0] lo_x,
    output wire [K*16-1:0] hi_x,
    output wire [K*16-1:0] y,
    output wire [K-1:0]    outlier
);
    genvar i;
    generate
        for (i = 0; i < K; i = i + 1) begin : g_col
            comparator #(.W(15)) cmp (.a(x[i*16 +: 15]), .b(thr), .gt(outlier[i]));
            mux2 #(.W(16)) m_lo (.a(x[i*16 +: 16]), .b(16'h0000), .s(outlier[i]), .y(lo_x[i*16 +: 16]));
            mux2 #(.W(16)) m_hi (.a(16'h0000), .b(x[i*16 +: 16]), .s(outlier[i]), .y(hi_x[i*16 +: 16]));
            mux2 #(.W(16)) m_g  (.a(lo_res[i*16 +: 16]), .b(hi_res[i*16 +: 16]), .s(outlier[i]),
                                 .y(y[i*16 +: 16]));
        end
    endgenerate
endmodule

// Registered MX dot-product unit with fixed-point cross-block accumulator (for synthesis).
module mx_dot_acc_fixed #(parameter A = 8, parameter B = 8, parameter K = 16,
                          parameter W = 32, parameter F = 16) (
    input wire clk,
    input wire rst,
    input wire [K*A-1:0]        xa,
    input wire [K*B-1:0]        xb,
    input wire [7:0]            sa,
    input wire [7:0]            sb,
    output reg signed [W-1:0] acc
);
    localparam SW = A + B - 1 + $clog2(K);
    wire signed [SW-1:0] s;
    wire signed [9:0] e;
    /* verilator lint_off UNUSEDSIGNAL */
    wire nan;   // a fixed-point accumulator has no NaN: a NaN scale is the caller's to flag
    /* verilator lint_on UNUSEDSIGNAL */
    wire signed [W-1:0] nxt;
    mx_dot #(.A(A), .B(B), .K(K), .QSUM(-(A - 2) - (B - 2))) dot (
        .xa(xa), .xb(xb), .sa(sa), .sb(sb), .s(s), .e(e), .nan(nan));
    mx_acc_fixed #(.SW(SW), .W(W), .F(F), .SAT(1)) acc_step (.acc_in(acc), .s(s), .e(e), .acc_out(nxt));
    always @(posedge clk) begin
        if (rst) acc <= {W{1'b0}};
        else     acc <= nxt;
    end
endmodule

`default_nettype wire
