// The LQER paper's FPGA micro-architectures (LQER-icml2024.xlsx, sheet hw-perf), rebuilt in
// Verilog-2005 after ../shared/reference/hw_area_facts.md: one token, 16 K-elements per
// cycle per GEMM unit (16 multipliers, a 16-input adder tree, an accumulator), every
// multiply and add in fabric (synthesized with synth_xilinx -family xcup -nodsp).
// Operands come from ports (HLS reads them from partitioned arrays; the address logic is
// not modelled). Constants that the HLS C++ divides or multiplies by are ports too: Vitis
// HLS instantiates a full half-precision divider/multiplier core for them.
// This file: the FP16, LLM.int, GPTQ/AWQ and LQER-int designs; needs int_units.v, fp_units.v.
// The LQER-MXINT designs are in paper_mx.v.
`default_nettype none
// one file holds a family of modules, not one module named after the file:
/* verilator lint_off DECLFILENAME */


// Tree of FP16 adders over N inputs (N-1 adders), level by level: neighbours are paired, an
// odd one out passes to the next level (as max_tree in int_units.v).
module fp16_add_tree #(parameter N = 16) (
    input wire [N*16-1:0] x,
    output wire [15:0]    y
);
    localparam L = $clog2(N);
    genvar l, i;
    generate
        if (N == 1) begin : g_leaf
            assign y = x;
        end else begin : g_tree
            for (l = 0; l <= L; l = l + 1) begin : g_lvl
                localparam CNT = (N + (1 << l) - 1) >> l;
                wire [CNT*16-1:0] v;
                if (l == 0) begin : g_in
                    assign v = x;
                end else begin : g_node
                    localparam PC = (N + (1 << (l - 1)) - 1) >> (l - 1);
                    for (i = 0; i < CNT; i = i + 1) begin : g_i
                        if (2 * i + 1 < PC) begin : g_add
                            fp16_add add (.a(g_lvl[l-1].v[2*i*16 +: 16]), .b(g_lvl[l-1].v[(2*i+1)*16 +: 16]),
                                          .y(v[i*16 +: 16]));
                        end else begin : g_pass
                            assign v[i*16 +: 16] = g_lvl[l-1].v[2*i*16 +: 16];
                        end
                    end
                end
            end
            assign y = g_lvl[L].v;
        end
    endgenerate
endmodule

// FP16 GEMM unit: 16 FP16 multipliers, 15-adder FP16 tree, FP16 accumulator.
module fp16_gemm16 (
    input wire clk,
    input wire rst,
    input wire [255:0]    x,
    input wire [255:0]    w,
    output reg [15:0] acc
);
    wire [255:0] p;
    wire [15:0] s, nxt;
    genvar i;
    generate
        for (i = 0; i < 16; i = i + 1) begin : g_lane
            fp16_mul mul (.a(x[i*16 +: 16]), .b(w[i*16 +: 16]), .y(p[i*16 +: 16]));
        end
    endgenerate
    fp16_add_tree #(.N(16)) tree (.x(p), .y(s));
    fp16_add accadd (.a(acc), .b(s), .y(nxt));
    always @(posedge clk) acc <= rst ? 16'h0000 : nxt;
endmodule

// Integer GEMM unit: 16 A x B multipliers, adder tree, W-bit accumulator (truncating).
module int_gemm16 #(parameter A = 8, parameter B = 8, parameter W = 32) (
    input wire clk,
    input wire rst,
    input wire [16*A-1:0]        x,
    input wire [16*B-1:0]        w,
    output reg signed [W-1:0] acc
);
    localparam PW = A + B;
    wire [16*PW-1:0] p;
    wire signed [PW+3:0] s;
    genvar i;
    generate
        for (i = 0; i < 16; i = i + 1) begin : g_lane
            int_mul #(.A(A), .B(B)) mul (.a(x[i*A +: A]), .b(w[i*B +: B]), .p(p[i*PW +: PW]));
        end
    endgenerate
    adder_tree #(.W(PW), .N(16)) tree (.x(p), .y(s));
    // the accumulator truncates (or sign-extends) the tree's sum to W bits, as the HLS code
    wire signed [W-1:0] sw;
    generate
        if (W > PW + 4) begin : g_ext
            assign sw = {{(W - PW - 4){s[PW+3]}}, s};
        end else begin : g_trunc
            /* verilator lint_off UNUSEDSIGNAL */
            wire signed [PW+3:0] st = s;
            /* verilator lint_on UNUSEDSIGNAL */
            assign sw = st[W-1:0];
        end
    endgenerate
    always @(posedge clk) begin
        if (rst) acc <= {W{1'b0}};
        else     acc <= acc + sw;
    end
endmodule

// FP16 baseline: one 16-lane FP16 GEMM unit.
module paper_fp16 (
    input wire clk, input wire rst, input wire [255:0] x, input wire [255:0] w, output wire [15:0] y
);
    fp16_gemm16 u (.clk(clk), .rst(rst), .x(x), .w(w), .acc(y));
endmodule

// LLM.int4() / LLM.int8() (llm_int.cpp with the integer type of LB bits): scatter by a
// threshold compare, a 16-lane FP16 GEMM for the outlier columns, a low-precision GEMM that
// quantizes 16 x and 16 w per cycle (FP16 x 127, / scale, to int), 16 LB x LB products and
// an adder tree, and the gather (int to FP16, x two scales, / 127^2, FP16 add).
module paper_llm_int #(parameter LB = 4) (
    input wire clk,
    input wire rst,
    input wire [255:0]    x,
    input wire [255:0]    w_lo,
    input wire [255:0]    w_hi,
    input wire [14:0]     thr,
    input wire [15:0]     c127,
    input wire [15:0]     c127sq,
    input wire [15:0]     sx,
    input wire [15:0]     sw,
    output wire [15:0]     y
);
    wire [255:0] lo_x, hi_x;
    wire [15:0] outl;
    genvar i;
    generate
        for (i = 0; i < 16; i = i + 1) begin : g_sc
            comparator #(.W(15)) cmp (.a(x[i*16 +: 15]), .b(thr), .gt(outl[i]));
            mux2 #(.W(16)) m_lo (.a(x[i*16 +: 16]), .b(16'h0000), .s(outl[i]), .y(lo_x[i*16 +: 16]));
            mux2 #(.W(16)) m_hi (.a(16'h0000), .b(x[i*16 +: 16]), .s(outl[i]), .y(hi_x[i*16 +: 16]));
        end
    endgenerate
    wire [15:0] hp;
    fp16_gemm16 hp_mm (.clk(clk), .rst(rst), .x(hi_x), .w(w_hi), .acc(hp));
    wire [16*LB-1:0] xq, wq;
    generate
        for (i = 0; i < 16; i = i + 1) begin : g_q
            wire [15:0] xm, xd, wm, wd;
            fp16_mul  mx (.a(lo_x[i*16 +: 16]), .b(c127), .y(xm));
            fp16_div  dx (.a(xm), .b(sx), .y(xd));
            fp16_to_int #(.A(LB)) cx (.x(xd), .y(xq[i*LB +: LB]));
            fp16_mul  mw (.a(w_lo[i*16 +: 16]), .b(c127), .y(wm));
            fp16_div  dw (.a(wm), .b(sw), .y(wd));
            fp16_to_int #(.A(LB)) cw (.x(wd), .y(wq[i*LB +: LB]));
        end
    endgenerate
    wire signed [31:0] lacc;
    int_gemm16 #(.A(LB), .B(LB), .W(32)) lp_mm (.clk(clk), .rst(rst), .x(xq), .w(wq), .acc(lacc));
    // gather
    wire [15:0] lf, l1, l2, l3;
    int_to_fp16 #(.A(32)) cvt (.x(lacc), .y(lf));
    fp16_mul g1 (.a(lf), .b(sx), .y(l1));
    fp16_mul g2 (.a(l1), .b(sw), .y(l2));
    fp16_div g3 (.a(l2), .b(c127sq), .y(l3));
    fp16_add g4 (.a(l3), .b(hp), .y(y));
endmodule

// GPTQ/AWQ (awq.cpp): dequantize 16 weights per cycle (int to FP16, x constant, / 127,
// x group scale), then a 16-lane FP16 GEMM.
module paper_awq #(parameter WB = 4) (
    input wire clk,
    input wire rst,
    input wire [255:0]    x,
    input wire [16*WB-1:0] wq,
    input wire [15:0]     cmul,
    input wire [15:0]     c127,
    input wire [15:0]     gscale,
    output wire [15:0]     y
);
    wire [255:0] wd;
    genvar i;
    generate
        for (i = 0; i < 16; i = i + 1) begin : g_dq
            wire [15:0] f, m, d;
            int_to_fp16 #(.A(WB)) cvt (.x(wq[i*WB +: WB]), .y(f));
            fp16_mul mc (.a(f), .b(cmul), .y(m));
            fp16_div dv (.a(m), .b(c127), .y(d));
            fp16_mul ms (.a(d), .b(gscale), .y(wd[i*16 +: 16]));
        end
    endgenerate
    fp16_gemm16 mm (.clk(clk), .rst(rst), .x(x), .w(wd), .acc(y));
endmodule

// LQER with fixed point (bl_int.cpp): mm1 16-bit x times 4-bit W, mm2 x times A (16 x 16),
// mm3 (xA) times B (16 x 16), 16-bit truncating accumulators, and 16 16-bit adders.
module paper_lqer_int (
    input wire clk,
    input wire rst,
    input wire [255:0] x,
    input wire [63:0]  w,
    input wire [255:0] a,
    input wire [255:0] xa,
    input wire [255:0] b,
    input wire [255:0] add_a,
    input wire [255:0] add_b,
    output wire [15:0]  y1,
    output wire [15:0]  y2,
    output wire [15:0]  y3,
    output wire [271:0] ysum
);
    int_gemm16 #(.A(16), .B(4), .W(16))  mm1 (.clk(clk), .rst(rst), .x(x),  .w(w), .acc(y1));
    int_gemm16 #(.A(16), .B(16), .W(16)) mm2 (.clk(clk), .rst(rst), .x(x),  .w(a), .acc(y2));
    int_gemm16 #(.A(16), .B(16), .W(16)) mm3 (.clk(clk), .rst(rst), .x(xa), .w(b), .acc(y3));
    genvar i;
    generate
        for (i = 0; i < 16; i = i + 1) begin : g_add
            int_add #(.W(16)) ad (.a(add_a[i*16 +: 16]), .b(add_b[i*16 +: 16]), .s(ysum[i*17 +: 17]));
        end
    endgenerate
endmodule

`default_nettype wire
