// Integer building blocks of the hardware model (Verilog-2005; Yosys 0.23 and Icarus 11).
// Every module is combinational except fixed_acc and reg_bits, so that a synthesized cell
// count is the cost of exactly the component named in hwmodel/costs/*.csv.
`default_nettype none
// one file holds a family of modules, not one module named after the file:
/* verilator lint_off DECLFILENAME */


// Signed A x B multiplier, full A+B-bit product.
module int_mul #(parameter A = 4, parameter B = 4) (
    input wire signed [A-1:0]   a,
    input wire signed [B-1:0]   b,
    output wire signed [A+B-1:0] p
);
    assign p = a * b;
endmodule

// W-bit signed adder with a W+1-bit result.
module int_add #(parameter W = 8) (
    input wire signed [W-1:0] a,
    input wire signed [W-1:0] b,
    output wire signed [W:0]   s
);
    assign s = a + b;
endmodule

// W-bit unsigned exponent adder (e.g. two E8M0 scale codes), W+1-bit result.
module exp_add #(parameter W = 8) (
    input wire [W-1:0] a,
    input wire [W-1:0] b,
    output wire [W:0]   s
);
    assign s = a + b;
endmodule

// W-bit unsigned magnitude comparator: gt = a > b.
module comparator #(parameter W = 8) (
    input wire [W-1:0] a,
    input wire [W-1:0] b,
    output wire gt
);
    assign gt = a > b;
endmodule

// W-bit 2:1 multiplexer.
module mux2 #(parameter W = 8) (
    input wire [W-1:0] a,
    input wire [W-1:0] b,
    input wire s,
    output wire [W-1:0] y
);
    assign y = s ? b : a;
endmodule

// Arithmetic right barrel shifter: W data bits, S shift-amount bits.
module barrel_shifter #(parameter W = 16, parameter S = 4) (
    input wire signed [W-1:0] d,
    input wire [S-1:0] sh,
    output wire signed [W-1:0] y
);
    assign y = d >>> sh;
endmodule

// Maximum of N unsigned W-bit inputs (packed, input 0 in the low bits): a tree of
// comparators and muxes (N-1 of each), level by level: neighbours are paired, an odd one out
// passes to the next level. (Iterative, not recursive: Verilator lints recursive modules badly.)
module max_tree #(parameter W = 8, parameter N = 16) (
    input wire [N*W-1:0] x,
    output wire [W-1:0]  y
);
    localparam L = $clog2(N);
    genvar l, i;
    generate
        if (N == 1) begin : g_leaf
            assign y = x;
        end else begin : g_tree
            for (l = 0; l <= L; l = l + 1) begin : g_lvl
                localparam CNT = (N + (1 << l) - 1) >> l;      // values at level l
                wire [CNT*W-1:0] v;
                if (l == 0) begin : g_in
                    assign v = x;
                end else begin : g_node
                    localparam PC = (N + (1 << (l - 1)) - 1) >> (l - 1);   // values one level up
                    for (i = 0; i < CNT; i = i + 1) begin : g_i
                        if (2 * i + 1 < PC) begin : g_max
                            wire [W-1:0] lo = g_lvl[l-1].v[2*i*W +: W];
                            wire [W-1:0] hi = g_lvl[l-1].v[(2*i+1)*W +: W];
                            assign v[i*W +: W] = (hi > lo) ? hi : lo;
                        end else begin : g_pass
                            assign v[i*W +: W] = g_lvl[l-1].v[2*i*W +: W];
                        end
                    end
                end
            end
            assign y = g_lvl[L].v;
        end
    endgenerate
endmodule

// Signed adder tree of N W-bit inputs with growing widths (+1 bit per level), level by level
// as max_tree; output width W + clog2(N). Exact: the sum never overflows.
module adder_tree #(parameter W = 8, parameter N = 16) (
    input wire signed [N*W-1:0]         x,
    output wire signed [W+$clog2(N)-1:0] y
);
    localparam L = $clog2(N);
    genvar l, i;
    generate
        if (N == 1) begin : g_leaf
            assign y = x;
        end else begin : g_tree
            for (l = 0; l <= L; l = l + 1) begin : g_lvl
                localparam CNT = (N + (1 << l) - 1) >> l;      // values at level l, W + l bits each
                localparam VW = W + l;
                wire [CNT*VW-1:0] v;
                if (l == 0) begin : g_in
                    assign v = x;
                end else begin : g_node
                    localparam PC = (N + (1 << (l - 1)) - 1) >> (l - 1);
                    localparam PW = VW - 1;
                    for (i = 0; i < CNT; i = i + 1) begin : g_i
                        wire [PW-1:0] lo = g_lvl[l-1].v[2*i*PW +: PW];
                        if (2 * i + 1 < PC) begin : g_add
                            wire [PW-1:0] hi = g_lvl[l-1].v[(2*i+1)*PW +: PW];
                            assign v[i*VW +: VW] = {lo[PW-1], lo} + {hi[PW-1], hi};
                        end else begin : g_pass
                            assign v[i*VW +: VW] = {lo[PW-1], lo};
                        end
                    end
                end
            end
            assign y = g_lvl[L].v;
        end
    endgenerate
endmodule

// Fixed-point accumulator: W-bit adder plus W-bit register (acc <= acc + d).
module fixed_acc #(parameter W = 16) (
    input wire clk,
    input wire rst,
    input wire signed [W-1:0] d,
    output reg signed [W-1:0] acc
);
    always @(posedge clk) begin
        if (rst) acc <= {W{1'b0}};
        else     acc <= acc + d;
    end
endmodule

// W register bits (the cost of one register bit is the cell count / W).
module reg_bits #(parameter W = 16) (
    input wire clk,
    input wire [W-1:0] d,
    output reg [W-1:0] q
);
    always @(posedge clk) q <= d;
endmodule

`default_nettype wire
