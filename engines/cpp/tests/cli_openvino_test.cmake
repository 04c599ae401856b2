# msn_upscale on an ONNX graph (OpenVINO backend) must write the Python runtime's pixels.
set(out ${FIXTURES}/${CASE}_cli.png)
file(REMOVE ${out})
# A file of the user's named like a temporary output must survive the run untouched.
file(WRITE ${out}.tmp "the user's own file")
execute_process(COMMAND ${CLI} ${FIXTURES}/msn_random.onnx ${FIXTURES}/${CASE}_in.png ${out} ${ARGS}
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "msn_upscale exited ${rc}: ${err}")
endif()
file(READ ${out}.tmp kept)
if(NOT kept STREQUAL "the user's own file")
  message(FATAL_ERROR "msn_upscale replaced ${out}.tmp, a file it did not create")
endif()
file(GLOB leftovers ${FIXTURES}/.${CASE}_cli.png.*)
if(leftovers)
  message(FATAL_ERROR "temporary files left behind: ${leftovers}")
endif()
execute_process(COMMAND ${PYTHON} tests/cpp/compare_images.py ${out} ${FIXTURES}/${CASE}_expected.png --max-diff 1
                WORKING_DIRECTORY ${SOURCE} RESULT_VARIABLE rc OUTPUT_VARIABLE text ERROR_VARIABLE text)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "output differs from the Python runtime: ${text}")
endif()
message(STATUS "${text}")
