// Clocked, pipelined MX units (Verilog-2005): the block dot product and the cross-block
// accumulators with a STAGES parameter and a valid signal; STAGES = 0 is the combinational
// unit of mx_units.v. Needs int_units.v, fp_units.v, mx_units.v.
// Reset: synchronous, active high; it clears the valid bits, the data registers are don't-care.
`default_nettype none
// one file holds a family of modules, not one module named after the file:
/* verilator lint_off DECLFILENAME */

// STAGES registers of W data bits and a valid bit; STAGES = 0 is a wire.
module pipe_delay #(parameter W = 8, parameter STAGES = 1) (
    /* verilator lint_off UNUSEDSIGNAL */
    input wire         clk,   // (unused when STAGES = 0)
    input wire         rst,
    /* verilator lint_on UNUSEDSIGNAL */
    input wire         in_valid,
    input wire [W-1:0] d,
    output wire        out_valid,
    output wire [W-1:0] q
);
    genvar k;
    generate
        if (STAGES == 0) begin : g_wire
            assign out_valid = in_valid;
            assign q = d;
        end else begin : g_regs
            for (k = 0; k < STAGES; k = k + 1) begin : g_st
                reg [W-1:0] r;
                reg         v;
                if (k == 0) begin : g_first
                    always @(posedge clk) begin
                        r <= d;
                        v <= rst ? 1'b0 : in_valid;
                    end
                end else begin : g_next
                    always @(posedge clk) begin
                        r <= g_st[k-1].r;
                        v <= rst ? 1'b0 : g_st[k-1].v;
                    end
                end
            end
            assign out_valid = g_st[STAGES-1].v;
            assign q = g_st[STAGES-1].r;
        end
    endgenerate
endmodule

// MX block dot product with STAGES pipeline registers: stage 1 registers the K products and
// the exponent sum (the cut between the multipliers and the adder tree), the other STAGES-1
// register the result after the tree (more stages for a synthesis tool to retime). Same S, E,
// nan as mx_dot, STAGES cycles later; out_valid follows in_valid.
module mx_dot_pipe #(parameter A = 8, parameter B = 8, parameter K = 32,
                     parameter EBIAS = 254, parameter QSUM = -12, parameter STAGES = 2) (
    input wire                            clk,
    input wire                            rst,
    input wire                            in_valid,
    input wire [K*A-1:0]                  xa,
    input wire [K*B-1:0]                  xb,
    input wire [7:0]                      sa,
    input wire [7:0]                      sb,
    output wire                           out_valid,
    output wire signed [A+B-1+$clog2(K)-1:0] s,
    output wire signed [9:0]              e,
    output wire                           nan
);
    localparam PW = A + B - 1;
    localparam SW = PW + $clog2(K);
    localparam integer EOFF_I = QSUM - EBIAS;
    localparam signed [9:0] EOFF = EOFF_I[9:0];
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
    wire [8:0] esum;
    exp_add #(.W(8)) eadd (.a(sa), .b(sb), .s(esum));
    wire nan_c = (sa == 8'hff) | (sb == 8'hff);
    // stage 1 (if any): products, exponent sum, nan
    wire           v1;
    wire [K*PW-1:0] prods1;
    wire [8:0]     esum1;
    wire           nan1;
    pipe_delay #(.W(K * PW + 10), .STAGES(STAGES > 0 ? 1 : 0)) st1 (
        .clk(clk), .rst(rst), .in_valid(in_valid), .d({prods, esum, nan_c}),
        .out_valid(v1), .q({prods1, esum1, nan1}));
    wire signed [SW-1:0] s1;
    adder_tree #(.W(PW), .N(K)) tree (.x(prods1), .y(s1));
    wire signed [9:0] e1 = $signed({1'b0, esum1}) + EOFF;
    // stages 2..STAGES: the result
    pipe_delay #(.W(SW + 11), .STAGES(STAGES > 1 ? STAGES - 1 : 0)) st2 (
        .clk(clk), .rst(rst), .in_valid(v1), .d({s1, e1, nan1}),
        .out_valid(out_valid), .q({s, e, nan}));
endmodule

// Cross-block accumulator over a stream of block results (S, E, nan) with in_valid, first and
// last flags: STAGES input registers (for the fixed-point mode the alignment shift and its
// clamp sit before them, so they are pipelined too), then the accumulator register, which
// restarts from 0 on `first`. One result per vector: out_valid pulses one cycle after the
// accumulator took the `last` block, i.e. STAGES + 1 cycles after `last` was presented.
// FP32 = 0: fixed point W bits, F fraction bits, SAT = 1 saturate / 0 wrap (mx_acc_fixed);
// FP32 = 1: fused FP32, acc <- fl32(acc + S*2^E), one rounding (mx_acc_fp32); W must be 32.
module mx_acc_pipe #(parameter SW = 20, parameter XW = 10, parameter FP32 = 0, parameter W = 32,
                     parameter F = 16, parameter SAT = 1, parameter STAGES = 1) (
    input wire                 clk,
    input wire                 rst,
    input wire                 in_valid,
    input wire                 in_first,
    input wire                 in_last,
    input wire signed [SW-1:0] s,
    input wire signed [XW-1:0] e,
    input wire                 nan_in,
    output reg                 out_valid,
    output reg [W-1:0]         acc
);
    wire          v_d, first_d, last_d;
    wire [W-1:0]  nxt;
    generate
        if (FP32 != 0) begin : g_fp32
            wire signed [SW-1:0] s_d;
            wire signed [XW-1:0] e_d;
            wire nan_d;
            pipe_delay #(.W(SW + XW + 3), .STAGES(STAGES)) dl (
                .clk(clk), .rst(rst), .in_valid(in_valid), .d({in_first, in_last, nan_in, e, s}),
                .out_valid(v_d), .q({first_d, last_d, nan_d, e_d, s_d}));
            mx_acc_fp32 #(.SW(SW), .XW(XW)) step (
                .acc_in(first_d ? {W{1'b0}} : acc), .s(s_d), .e(e_d), .nan_in(nan_d), .acc_out(nxt));
        end else begin : g_fixed
            /* verilator lint_off UNUSEDSIGNAL */
            wire nan_unused = nan_in;   // a fixed-point accumulator has no NaN
            /* verilator lint_on UNUSEDSIGNAL */
            wire signed [W-1:0] al, al_d;
            mx_align_fixed #(.SW(SW), .XW(XW), .W(W), .F(F), .SAT(SAT)) align (.s(s), .e(e), .aligned(al));
            pipe_delay #(.W(W + 2), .STAGES(STAGES)) dl (
                .clk(clk), .rst(rst), .in_valid(in_valid), .d({in_first, in_last, al}),
                .out_valid(v_d), .q({first_d, last_d, al_d}));
            mx_add_fixed #(.W(W), .SAT(SAT)) step (.acc_in(first_d ? {W{1'b0}} : acc), .aligned(al_d), .acc_out(nxt));
        end
    endgenerate
    always @(posedge clk) begin
        if (rst) begin
            out_valid <= 1'b0;
        end else begin
            out_valid <= v_d & last_d;
        end
        if (v_d) acc <= nxt;
    end
endmodule

// The MX dot-product unit followed by three cross-block accumulators side by side (two
// fixed-point, one fused FP32) on the same block stream: the unit the RTL tests drive.
// Latency from a vector's last block to out_valid: DOT_STAGES + ACC_STAGES + 1 cycles.
module mx_dot_accs_pipe #(parameter A = 8, parameter B = 8, parameter K = 32,
                          parameter W0 = 32, parameter F0 = 16, parameter SAT0 = 1,
                          parameter W1 = 16, parameter F1 = 8, parameter SAT1 = 0,
                          parameter DOT_STAGES = 2, parameter ACC_STAGES = 1) (
    input wire                            clk,
    input wire                            rst,
    input wire                            in_valid,
    input wire                            in_first,
    input wire                            in_last,
    input wire [K*A-1:0]                  xa,
    input wire [K*B-1:0]                  xb,
    input wire [7:0]                      sa,
    input wire [7:0]                      sb,
    output wire                           dot_valid,
    output wire signed [A+B-1+$clog2(K)-1:0] dot_s,
    output wire signed [9:0]              dot_e,
    output wire                           dot_nan,
    output wire                           out_valid,
    output wire [W0-1:0]                  acc0,
    output wire [W1-1:0]                  acc1,
    output wire [31:0]                    acc_fp32
);
    localparam SW = A + B - 1 + $clog2(K);
    wire first_d, last_d;
    mx_dot_pipe #(.A(A), .B(B), .K(K), .QSUM(-(A - 2) - (B - 2)), .STAGES(DOT_STAGES)) dot (
        .clk(clk), .rst(rst), .in_valid(in_valid), .xa(xa), .xb(xb), .sa(sa), .sb(sb),
        .out_valid(dot_valid), .s(dot_s), .e(dot_e), .nan(dot_nan));
    // the first/last flags travel beside the dot unit's pipeline
    /* verilator lint_off UNUSEDSIGNAL */
    wire flags_valid;   // equal to dot_valid
    /* verilator lint_on UNUSEDSIGNAL */
    pipe_delay #(.W(2), .STAGES(DOT_STAGES)) flags (
        .clk(clk), .rst(rst), .in_valid(in_valid), .d({in_first, in_last}),
        .out_valid(flags_valid), .q({first_d, last_d}));
    /* verilator lint_off UNUSEDSIGNAL */
    wire v1, v2;        // equal to out_valid: the three accumulators run in lockstep
    /* verilator lint_on UNUSEDSIGNAL */
    mx_acc_pipe #(.SW(SW), .FP32(0), .W(W0), .F(F0), .SAT(SAT0), .STAGES(ACC_STAGES)) a0 (
        .clk(clk), .rst(rst), .in_valid(dot_valid), .in_first(first_d), .in_last(last_d),
        .s(dot_s), .e(dot_e), .nan_in(dot_nan), .out_valid(out_valid), .acc(acc0));
    mx_acc_pipe #(.SW(SW), .FP32(0), .W(W1), .F(F1), .SAT(SAT1), .STAGES(ACC_STAGES)) a1 (
        .clk(clk), .rst(rst), .in_valid(dot_valid), .in_first(first_d), .in_last(last_d),
        .s(dot_s), .e(dot_e), .nan_in(dot_nan), .out_valid(v1), .acc(acc1));
    mx_acc_pipe #(.SW(SW), .FP32(1), .W(32), .STAGES(ACC_STAGES)) a2 (
        .clk(clk), .rst(rst), .in_valid(dot_valid), .in_first(first_d), .in_last(last_d),
        .s(dot_s), .e(dot_e), .nan_in(dot_nan), .out_valid(v2), .acc(acc_fp32));
endmodule

`default_nettype wire
